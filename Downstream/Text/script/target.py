"""What every Downstream/Text launcher shares: the target data, the item encoder, the source checkpoint
and the training budget. Edit here once for all methods; each launcher adds its method's constants.

Paper setting (MIND -> Adressa): DATASET "Dataset/Adressa", USERS "Adressa_users_base.tsv",
ITEMS "Adressa_news_base.tsv", ENCODER "bert_base_uncased", SOURCE the best SASRec+BERT MIND checkpoint,
epochs 100, batch_size 32, loss "bce", precision "fp32", 1 GPU per run.
"""
NPROC = 1                                  # processes: GPUs, or a small number on CPU
DATASET = "Dataset/default/target"         # folder with the users and items files (relative to the repo root)
USERS, ITEMS = "users.tsv", "items.tsv"
ENCODER = "all-MiniLM-L6-v2"               # must be the source run's item encoder (folder in pretrained_models/)
SOURCE = "runs/sm_base_sasrec/best.pt"     # written by Pretraining/Text/script/sm_base_sasrec.py

BASE = dict(dataset=DATASET, users_file=USERS, items_file=ITEMS, item_encoder=ENCODER, source_checkpoint=SOURCE,
            arch="sasrec", loss="inbatch", epochs=5, batch_size=64, max_seq_len=20, embedding_dim=64,
            precision="auto", lr=1e-3, item_encoder_lr=5e-5, seed=12345)
# precision auto: bf16 where the CPU or GPU computes it in hardware (AVX512-BF16, AMX, recent GPUs), else fp32
