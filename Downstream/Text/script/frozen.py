"""Baseline: transfer with the whole source model frozen; only the item projection head trains.

Data, encoder, source checkpoint and budget come from target.py. Extra arguments override ARGS.
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="none", train_head=True)
SWEEP = dict(lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
