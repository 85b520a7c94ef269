"""Transfer with a side network over the frozen ViT / MAE (decoupled PEFT, in the spirit of IISAN): every
item's pooled states at every other ViT layer (the last one after the final LayerNorm, as the item tower reads
it) are computed once into a keyed cache under cache_dir; a small gated chain over them, in a narrow width,
corrects the item state (adapters/side.py). Houlsby adapters in the user encoder; everything pretrained frozen.
Edit the constants, then `python sm_vit_side.py`; extra arguments override (see adapter4rec/experiments/launch.py).
"""
from target import BASE, ITEM_ADAPTER, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="side", adapter_where="both", side_layers="", side_cache_dtype="bf16",
            item_adapter_size=ITEM_ADAPTER, user_adapter_size=16, tune_layernorm=False)
# chosen on validation NDCG@10 on the default target (commit 218be39, the narrow side network): 1e-2 0.1391 >
# 2e-2 0.1307 > 3e-3 0.1299 (Houlsby at its 1e-3: 0.1335)
SWEEP = dict(item_adapter_lr=[1e-2], user_adapter_lr=[1e-2])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
