"""Transfer over the frozen real ViT (DINOv2 ViT-S/14, `make encoders`): from the source run of
Pretraining/CV/script/sm_dinov2_sasrec.py, the item head and the user encoder are fine-tuned on the target while
the ViT stays frozen (its CLS output computed once per item and cached) — the transfer a CPU affords with a
22M-parameter ViT; full fine-tuning of it is sm_vit.py with the REAL_VIT settings, on a GPU.

FROM_SCRATCH = True trains the same on the target alone (`--source_checkpoint=` does it for one call). Data,
size and budget come from target.py. Extra command-line arguments override ARGS.
"""
from target import BASE, NPROC, REAL_SOURCE, REAL_VIT

from adapter4rec.experiments.launch import sweep

FROM_SCRATCH = False

ARGS = dict(BASE, **REAL_VIT, tune="peft", adapter="none", train_head=True, train_user_encoder=True,
            source_checkpoint="" if FROM_SCRATCH else REAL_SOURCE)
SWEEP = dict(lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC, name="sm_dinov2-scratch" if FROM_SCRATCH else "sm_dinov2")
