"""Source-domain pretraining: CPC user encoder (loss at the last position only) over a text item encoder (paper: BERT-base on MIND).

Edit the constants, then `python sm_base_cpc.py` (from any folder). Each combination of the SWEEP lists
is one run in runs/<name>/; extra command-line arguments override ARGS (see adapter4rec/launch.py).
The defaults train on the embedded synthetic source domain with all-MiniLM-L6-v2 on a CPU in minutes.
Paper setting: DATASET "Dataset/MIND", USERS "mind_large_users_base.tsv", ITEMS "mind_large_news_base.tsv",
ENCODER "bert_base_uncased", epochs 60, batch 32, lr 1e-4, item_encoder_lr 5e-5, 2 GPUs, fp32 (see README).
"""
from adapter4rec.launch import sweep

NPROC = 1                                  # processes: GPUs, or a small number on CPU
DATASET = "Dataset/default/source"         # folder with the users and items files (relative to the repo root)
USERS, ITEMS = "users.tsv", "items.tsv"
ENCODER = "all-MiniLM-L6-v2"               # folder under pretrained_models/

ARGS = dict(dataset=DATASET, users_file=USERS, items_file=ITEMS, item_encoder=ENCODER, arch="cpc",
            loss="inbatch", epochs=3, batch_size=64, max_seq_len=20, embedding_dim=64, precision="bf16",
            seed=12345)
SWEEP = dict(lr=[1e-3], item_encoder_lr=[5e-5])  # lists: every combination is one run

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
