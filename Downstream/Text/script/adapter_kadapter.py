"""Transfer with K-Adapters: a side Transformer (2 blocks) fed by the first and last layers' hidden
states of each encoder, fused into the last hidden state; causal + padding mask in the user encoder.
Paper: width 192 and 12 heads in BERT, width 16 and 2 heads in SASRec, learning rates 5e-6.

Data, encoder, source checkpoint and budget come from target.py (shared by every Downstream/Text launcher).
Edit the constants, then `python adapter_kadapter.py`; extra arguments override ARGS (see adapter4rec/experiments/launch.py).
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="kadapter", adapter_where="both", item_adapter_size=192,
            user_adapter_size=16, kadapter_item_heads=12, kadapter_user_heads=2)
SWEEP = dict(item_adapter_lr=[5e-6], user_adapter_lr=[5e-6])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
