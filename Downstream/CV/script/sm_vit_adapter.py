"""Transfer with Houlsby (serial) adapters in the ViT and the user encoder: after the attention output
projection and after the feed-forward output projection of every layer; everything pretrained frozen.

Paper: bottleneck 64 in ViT-B, 16 in SASRec, adapter learning rates 4e-4, no LayerNorm tuning.
Edit the constants, then `python sm_vit_adapter.py`; extra arguments override (see adapter4rec/experiments/launch.py).
"""
from target import BASE, ITEM_ADAPTER, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="houlsby", adapter_where="both", adapter_sublayers="both",
            item_adapter_size=ITEM_ADAPTER, user_adapter_size=16, tune_layernorm=False)
SWEEP = dict(item_adapter_lr=[1e-3], user_adapter_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
