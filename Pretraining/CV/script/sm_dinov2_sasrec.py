"""Source-domain pretraining over the real pretrained ViT, frozen: DINOv2 ViT-S/14 (pretrained_models/
dinov2-vits14-224, placed by `make encoders`). Its CLS output is computed once per item (112 px) and cached; the
item head and the SASRec user encoder train over it. Full fine-tuning of a 22M-parameter ViT is for GPUs
(sm_vit_sasrec.py with `--item_encoder=dinov2-vits14-224`); this is the pretraining a CPU affords.

Data and budget come from source.py (REAL_VIT: encoder, size, what trains). Edit the constants, then
`python sm_dinov2_sasrec.py`; extra command-line arguments override ARGS (see adapter4rec/experiments/launch.py).
"""
from source import BASE, NPROC, REAL_VIT

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, **REAL_VIT, arch="sasrec")
SWEEP = dict(lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
