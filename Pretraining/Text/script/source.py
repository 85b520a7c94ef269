"""What the Pretraining/Text launchers share: the source data, the item encoder and the training budget.

The defaults train on the embedded synthetic source domain with all-MiniLM-L6-v2 on a CPU in minutes.
Paper setting (MIND): DATASET "Dataset/MIND", USERS "mind_large_users_base.tsv", ITEMS "mind_large_news_base.tsv",
ENCODER "bert_base_uncased", epochs 60, batch_size 32, loss "bce", precision "fp32", 2 GPUs (see docs/running.md).
"""
NPROC = 1                                  # processes: GPUs, or a small number on CPU
DATASET = "Dataset/default/source"         # folder with the users and items files (relative to the repo root)
USERS, ITEMS = "users.tsv", "items.tsv"
ENCODER = "all-MiniLM-L6-v2"               # folder under pretrained_models/

BASE = dict(dataset=DATASET, users_file=USERS, items_file=ITEMS, item_encoder=ENCODER, loss="inbatch", epochs=3,
            batch_size=64, max_seq_len=20, embedding_dim=64, precision="auto", seed=12345)
# precision auto: bf16 where the CPU or GPU computes it in hardware (AVX512-BF16, AMX, recent GPUs), else fp32
