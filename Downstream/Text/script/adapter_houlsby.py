"""Transfer with Houlsby (serial) adapters in the item encoder and the user encoder: after the attention
output projection and after the feed-forward output projection of every layer; everything pretrained frozen.

Paper: bottleneck 64 in BERT, 16 in SASRec, adapter learning rates 1.5e-4, no LayerNorm tuning.
Edit the constants, then `python adapter_houlsby.py`; extra arguments override (see adapter4rec/experiments/launch.py).
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="houlsby", adapter_where="both", adapter_sublayers="both",
            item_adapter_size=64, user_adapter_size=16, tune_layernorm=False)
SWEEP = dict(item_adapter_lr=[1.5e-4], user_adapter_lr=[1.5e-4])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
