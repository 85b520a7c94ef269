"""Target-domain transfer by full fine-tuning from the source checkpoint (paper: MIND -> Adressa).

Edit the constants, then `python finetune.py` (from any folder). FROM_SCRATCH = True trains the same model
on the target without the source checkpoint (the no-transfer baseline); `--source_checkpoint=` on the
command line does the same for one call. Extra command-line arguments override ARGS.
Paper setting: DATASET "Dataset/Adressa", USERS "Adressa_users_base.tsv", ITEMS "Adressa_news_base.tsv",
SOURCE "runs/sm_base_sasrec/best.pt" of a BERT-base MIND run, epochs 100, batch 32, lr 1e-4, item_encoder_lr 5e-5.
"""
from adapter4rec.launch import sweep

NPROC = 1
DATASET = "Dataset/default/target"
USERS, ITEMS = "users.tsv", "items.tsv"
ENCODER = "all-MiniLM-L6-v2"               # must be the source run's item encoder
SOURCE = "runs/sm_base_sasrec/best.pt"     # written by Pretraining/Text/script/sm_base_sasrec.py
FROM_SCRATCH = False

ARGS = dict(dataset=DATASET, users_file=USERS, items_file=ITEMS, item_encoder=ENCODER, arch="sasrec",
            loss="inbatch", epochs=5, batch_size=64, max_seq_len=20, embedding_dim=64, precision="bf16",
            source_checkpoint="" if FROM_SCRATCH else SOURCE, tune="all", seed=12345)
SWEEP = dict(lr=[1e-3], item_encoder_lr=[5e-5])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC, name="finetune-scratch" if FROM_SCRATCH else "finetune")
