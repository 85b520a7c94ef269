"""Transfer with parallel Houlsby adapters: a bottleneck on each sub-layer's input, added to its output
next to the residual (once; the original added the residual twice). Paper: bottleneck 64 (BERT) / 16
(SASRec), adapter learning rates 1.5e-4.

Data, encoder, source checkpoint and budget come from target.py (shared by every Downstream/Text launcher).
Edit the constants, then `python adapter_houlsby_parallel.py`; extra arguments override ARGS (see adapter4rec/experiments/launch.py).
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="parallel", adapter_where="both", adapter_sublayers="both",
            item_adapter_size=64, user_adapter_size=16)
SWEEP = dict(item_adapter_lr=[1.5e-4], user_adapter_lr=[1.5e-4])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
