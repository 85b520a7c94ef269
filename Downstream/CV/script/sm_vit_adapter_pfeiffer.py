"""Transfer with Pfeiffer adapters: one bottleneck per layer after the feed-forward sub-layer, with
LayerNorm tuning. (The paper's `pfeiffer_ver2` placed it after attention: `--adapter_sublayers attention`.)

Paper: bottleneck 64 in ViT-B, 16 in SASRec, adapter learning rates 4e-4. Extra arguments override ARGS.
"""
from target import BASE, ITEM_ADAPTER, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="pfeiffer", adapter_where="both", adapter_sublayers="ffn",
            item_adapter_size=ITEM_ADAPTER, user_adapter_size=16, tune_layernorm=True)
SWEEP = dict(item_adapter_lr=[1e-3], user_adapter_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
