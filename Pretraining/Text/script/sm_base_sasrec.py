"""Source-domain pretraining: SASRec user encoder (loss at every position) over a text item encoder
(paper: BERT-base on MIND, lr 1e-4, item_encoder_lr 5e-5).

Data, encoder and budget come from source.py. Edit the constants, then `python sm_base_sasrec.py` (from any
folder). Each combination of the SWEEP lists is one run in runs/<name>/; extra command-line arguments
override ARGS (see adapter4rec/experiments/launch.py).
"""
from source import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, arch="sasrec")
SWEEP = dict(lr=[1e-3], item_encoder_lr=[5e-5])  # lists: every combination is one run

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
