"""Transfer with a side network (decoupled PEFT, in the spirit of IISAN): the item encoder's backbone stays
frozen and off the training path; its pooled states at every other layer are computed once per item into a
keyed cache under cache_dir, and a small gated chain over them, in a narrow width, corrects the item state
(adapters/side.py). The user encoder gets Houlsby adapters (user_adapter); everything pretrained is frozen.

Identity at init: before training the transferred model scores exactly as the source model does. A step never
runs the backbone, so it costs about what the frozen baseline costs.
Edit the constants, then `python adapter_side.py`; extra arguments override (see adapter4rec/experiments/launch.py).
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="side", adapter_where="both", side_layers="", side_cache_dtype="bf16",
            item_adapter_size=64, user_adapter_size=16, tune_layernorm=False)
SWEEP = dict(item_adapter_lr=[1e-3], user_adapter_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
