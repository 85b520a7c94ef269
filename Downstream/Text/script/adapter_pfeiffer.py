"""Transfer with Pfeiffer adapters: one bottleneck per layer, after the feed-forward sub-layer (Pfeiffer
et al.). The paper's scripts used its variant after the attention sub-layer (SUBLAYER = "attention") with
LayerNorm tuning and adapter learning rates 1e-4.

Data, encoder, source checkpoint and budget come from target.py (shared by every Downstream/Text launcher).
Edit the constants, then `python adapter_pfeiffer.py`; extra arguments override ARGS (see adapter4rec/experiments/launch.py).
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

SUBLAYER = "ffn"                           # "ffn" (Pfeiffer et al.) or "attention" (the paper)

ARGS = dict(BASE, tune="peft", adapter="pfeiffer", adapter_where="both", adapter_sublayers=SUBLAYER,
            item_adapter_size=64, user_adapter_size=16, tune_layernorm=True)
SWEEP = dict(item_adapter_lr=[1e-4], user_adapter_lr=[1e-4])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
