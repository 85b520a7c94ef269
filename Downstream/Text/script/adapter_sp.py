"""Transfer with soft prompts: learned tokens inserted after [CLS] of every item title, all title tokens
kept (the original dropped them). Paper: 30 tokens, learning rate 5e-5 (its fine_tune_lr).

Data, encoder, source checkpoint and budget come from target.py (shared by every Downstream/Text launcher).
Edit the constants, then `python adapter_sp.py`; extra arguments override ARGS (see adapter4rec/experiments/launch.py).
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="prompt", adapter_where="item", prompt_tokens=30)
SWEEP = dict(item_adapter_lr=[5e-5])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
