"""What the Pretraining/CV launchers share: the source data, the item encoder and the training budget.

The defaults train on the embedded synthetic HM-format source domain (`make demo-cv` writes it) with a small
ViT built from a ViTConfig (pretrained_models/vit-tiny-demo, no download possible) on a CPU in minutes.
Paper setting (HM): DATASET "Dataset/HM", ITEMS "hm_50w_items.tsv", USERS "hm_50w_users.tsv",
LMDB "hm_50w_images.lmdb" (Dataset/build_lmdb.py, or the original builder's), ENCODER "vit-base-patch16-224"
or "mae", epochs 60, batch_size 8 per GPU, lr 2e-4, item_encoder_lr 1e-4, loss "bce", 4 GPUs (see docs/images.md).
"""
NPROC = 1                                    # processes: GPUs, or a small number on CPU
DATASET = "Dataset/default_cv/source"        # folder with the users/items files and the LMDB (relative to repo)
USERS, ITEMS, LMDB = "users.tsv", "items.tsv", "images.lmdb"
ENCODER = "vit-tiny-demo"                    # folder under pretrained_models/ (ViT or MAE)
# the real pretrained ViT (`make encoders`, docs/images.md), frozen: its pooled output is computed once per item and
# cached, the item head and the user encoder train over it (sm_dinov2_sasrec.py); 112 px, positions interpolated,
# keeps that one-off pass about 5x cheaper than 224 px on a CPU
REAL_VIT = dict(item_encoder="dinov2-vits14-224", image_size=112, tune="peft", adapter="none", train_head=True,
                train_user_encoder=True)

BASE = dict(dataset=DATASET, users_file=USERS, items_file=ITEMS, images_lmdb=LMDB, item_encoder=ENCODER,
            loss="inbatch", epochs=20, batch_size=64, max_seq_len=10, embedding_dim=64, precision="fp32",
            lr=1e-3, item_encoder_lr=1e-3, seed=12345)
