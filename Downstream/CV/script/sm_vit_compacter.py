"""Transfer with Compacter adapters (PHM layers, shared rule matrices) at the Houlsby positions, with
LayerNorm tuning. Paper: n = 4, bottleneck 64 in ViT-B, 16 in SASRec, learning rates 3e-3.
Extra arguments override ARGS.
"""
from target import BASE, ITEM_ADAPTER, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="compacter", adapter_where="both", item_adapter_size=ITEM_ADAPTER,
            user_adapter_size=16, compacter_n=4, tune_layernorm=True)
SWEEP = dict(item_adapter_lr=[3e-3], user_adapter_lr=[3e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
