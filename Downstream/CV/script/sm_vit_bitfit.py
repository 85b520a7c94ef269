"""Transfer with BitFit: only the bias terms of the ViT and the user encoder train (Ben Zaken et al. 2022; not
in the paper's code). Biases are not adapter modules, so they take the backbone / rest learning rates.
Extra arguments override ARGS.
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="none", tune_bias=True)
SWEEP = dict(item_encoder_lr=[1e-3], lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
