"""Source-domain pretraining: CPC objective (the same network, loss at the last position only) over a
text item encoder (paper: BERT-base on MIND, lr 5e-6, item_encoder_lr 5e-5; the original script forgot to
pass --arch cpc and trained SASRec).

Data, encoder and budget come from source.py. Edit the constants, then `python sm_base_cpc.py`.
"""
from source import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, arch="cpc")
SWEEP = dict(lr=[1e-3], item_encoder_lr=[5e-5])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
