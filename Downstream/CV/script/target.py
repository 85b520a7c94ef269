"""What every Downstream/CV launcher shares: the target data, the item encoder, the source checkpoint and the
training budget. Edit here once for all methods; each launcher adds its method's constants.

Defaults: the embedded synthetic Amazon-format target (`make demo-cv` writes it) and the small demo ViT,
with adapter sizes scaled to its width (64). Paper setting (HM -> Amazon clothes & shoes): DATASET
"Dataset/Amazon", USERS "amazon_2w_users.tsv", ITEMS "amazon_2w_items.tsv", LMDB "amazon_images.lmdb",
ENCODER "vit-base-patch16-224", SOURCE the SASRec+ViT HM checkpoint, ITEM_ADAPTER 64, ITEM_LORA_RANK 12,
ITEM_KADAPTER (192, 12 heads), epochs 100-150, batch_size 8 per GPU, lr 2e-4, item_encoder_lr 1e-4, 4 GPUs.
"""
NPROC = 1                                  # processes: GPUs, or a small number on CPU
DATASET = "Dataset/default_cv/target"      # folder with the users/items files and the LMDB (relative to repo)
USERS, ITEMS, LMDB = "users.tsv", "items.tsv", "images.lmdb"
ENCODER = "vit-tiny-demo"                  # must be the source run's item encoder (folder in pretrained_models/)
SOURCE = "runs/sm_vit_sasrec/best.pt"      # written by Pretraining/CV/script/sm_vit_sasrec.py
# the real pretrained ViT (`make encoders`) at the size its source run used, and that run (sm_dinov2*.py)
REAL_VIT = dict(item_encoder="dinov2-vits14-224", image_size=112)
REAL_SOURCE = "runs/sm_dinov2_sasrec/best.pt"  # written by Pretraining/CV/script/sm_dinov2_sasrec.py

ITEM_ADAPTER = 16                          # item-encoder bottleneck (paper: 64 in ViT-B, width 768)
ITEM_LORA_RANK = 4                         # LoRA rank in the ViT (paper: 12)
ITEM_KADAPTER = (32, 4)                    # K-Adapter width and heads in the ViT (paper: 192, 12)

BASE = dict(dataset=DATASET, users_file=USERS, items_file=ITEMS, images_lmdb=LMDB, item_encoder=ENCODER,
            source_checkpoint=SOURCE, arch="sasrec", loss="inbatch", epochs=20, batch_size=32, max_seq_len=10,
            embedding_dim=64, precision="fp32", lr=1e-3, item_encoder_lr=1e-3, seed=12345)
