"""Transfer with K-Adapters: a side Transformer (2 blocks) fed by the first and last layers' hidden states
of the ViT and of the user encoder, fused into the final output (identity at init).

Paper: width 192 and 12 heads in ViT-B, 16 and 2 heads in SASRec, learning rates 1.5e-5. Extra arguments
override ARGS.
"""
from target import BASE, ITEM_KADAPTER, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="kadapter", adapter_where="both", item_adapter_size=ITEM_KADAPTER[0],
            kadapter_item_heads=ITEM_KADAPTER[1], user_adapter_size=16, kadapter_user_heads=2)
SWEEP = dict(item_adapter_lr=[1e-3], user_adapter_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
