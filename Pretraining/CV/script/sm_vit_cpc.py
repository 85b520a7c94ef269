"""Source-domain pretraining with the CPC objective (loss at the last position only) over a ViT/MAE item
encoder (paper: ViT-base on HM, `--arch cpc`, same learning rates as SASRec).

Data, encoder and budget come from source.py. Edit the constants, then `python sm_vit_cpc.py`.
"""
from source import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, arch="cpc")
SWEEP = dict(lr=[1e-3], item_encoder_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
