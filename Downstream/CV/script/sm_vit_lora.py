"""Transfer with LoRA on the attention query and value projections of the ViT and of the user encoder,
keeping the pretrained weights (the original re-initialised them). Paper: rank 12 in ViT-B, 4 in SASRec.
Extra arguments override ARGS.
"""
from target import BASE, ITEM_LORA_RANK, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="lora", adapter_where="both", item_adapter_size=ITEM_LORA_RANK,
            user_adapter_size=4)
SWEEP = dict(item_adapter_lr=[1e-3], user_adapter_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
