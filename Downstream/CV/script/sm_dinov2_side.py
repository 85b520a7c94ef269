"""Transfer with a side network over the frozen real ViT (DINOv2 ViT-S/14, `make encoders`), from the source
run of Pretraining/CV/script/sm_dinov2_sasrec.py: the pooled states of every other one of its 12 layers are
computed once per item into a keyed cache, a narrow gated chain over them corrects the item state
(adapters/side.py), Houlsby adapters sit in the user encoder; everything pretrained stays frozen.
Edit the constants, then `python sm_dinov2_side.py`; extra arguments override (see adapter4rec/experiments/launch.py).
"""
from target import BASE, ITEM_ADAPTER, NPROC, REAL_SOURCE, REAL_VIT

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, **REAL_VIT, source_checkpoint=REAL_SOURCE, tune="peft", adapter="side", adapter_where="both",
            side_layers="", side_cache_dtype="bf16", item_adapter_size=ITEM_ADAPTER, user_adapter_size=16,
            tune_layernorm=False)
SWEEP = dict(item_adapter_lr=[1e-2], user_adapter_lr=[1e-2])  # sm_vit_side.py's, not tuned for this encoder

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
