"""Transfer with Compacter: Houlsby placement, PHM (Kronecker) bottlenecks sharing one set of rule
matrices, with a skip connection (identity at init). Paper: n = 4, bottleneck 64 / 16, LayerNorm tuning,
learning rates 4e-3.

Data, encoder, source checkpoint and budget come from target.py (shared by every Downstream/Text launcher).
Edit the constants, then `python adapter_compacter.py`; extra arguments override ARGS (see adapter4rec/experiments/launch.py).
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="compacter", adapter_where="both", item_adapter_size=64,
            user_adapter_size=16, compacter_n=4, tune_layernorm=True)
SWEEP = dict(item_adapter_lr=[4e-3], user_adapter_lr=[4e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
