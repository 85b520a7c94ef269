"""Transfer with LoRA on the query and value projections of both encoders, keeping the pretrained
weights (the original replaced them with random ones). Paper: rank 12 in BERT, 4 in SASRec, alpha 1
(loralib default), learning rates 1e-3.

Data, encoder, source checkpoint and budget come from target.py (shared by every Downstream/Text launcher).
Edit the constants, then `python adapter_lora.py`; extra arguments override ARGS (see adapter4rec/experiments/launch.py).
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="lora", adapter_where="both", item_adapter_size=12,
            user_adapter_size=4, lora_alpha=1.0)
SWEEP = dict(item_adapter_lr=[1e-3], user_adapter_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
