"""Target-domain transfer by full fine-tuning of the ViT and the user encoder from the source checkpoint
(paper: HM -> Amazon, lr 2e-4, item_encoder_lr 1e-4, 150 epochs).

FROM_SCRATCH = True trains the same model on the target without the source checkpoint (the no-transfer
baseline); `--source_checkpoint=` on the command line does the same for one call. Data, encoder, source
checkpoint and budget come from target.py. Extra command-line arguments override ARGS.
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

FROM_SCRATCH = False

ARGS = dict(BASE, tune="all", source_checkpoint="" if FROM_SCRATCH else BASE["source_checkpoint"])
SWEEP = dict(lr=[1e-3], item_encoder_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC, name="sm_vit-scratch" if FROM_SCRATCH else "sm_vit")
