"""Transfer with visual prompts (VPT-shallow): learned tokens inserted after [CLS], next to the patch tokens,
before the first ViT layer; everything else frozen. Paper: 10 tokens.
Extra arguments override ARGS.
"""
from target import BASE, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="prompt", adapter_where="item", prompt_tokens=10)
SWEEP = dict(item_adapter_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
