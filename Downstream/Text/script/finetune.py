"""Target-domain transfer by full fine-tuning from the source checkpoint (paper: MIND -> Adressa).

Data, encoder, source checkpoint and budget come from target.py (shared by every Downstream/Text launcher).
FROM_SCRATCH = True trains the same model on the target without the source checkpoint (the no-transfer
baseline); `--source_checkpoint=` on the command line does the same for one call. Extra command-line
arguments override ARGS (see adapter4rec/experiments/launch.py). Paper: lr 1e-4, item_encoder_lr 5e-5, 100 epochs.
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

FROM_SCRATCH = False

ARGS = dict(BASE, tune="all", source_checkpoint="" if FROM_SCRATCH else BASE["source_checkpoint"])
SWEEP = dict(lr=[1e-3], item_encoder_lr=[5e-5])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC, name="finetune-scratch" if FROM_SCRATCH else "finetune")
