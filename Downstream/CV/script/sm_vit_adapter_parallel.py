"""Transfer with parallel adapters (He et al. 2022): each bottleneck reads a sub-layer's input and adds its
output next to the sub-layer's (in the ViT: to the attention output and to the FFN output).

Paper: the Houlsby sizes, adapter learning rates 4e-4. Extra arguments override ARGS.
"""
from target import BASE, ITEM_ADAPTER, NPROC

from adapter4rec.experiments.launch import sweep

ARGS = dict(BASE, tune="peft", adapter="parallel", adapter_where="both", adapter_sublayers="both",
            item_adapter_size=ITEM_ADAPTER, user_adapter_size=16)
SWEEP = dict(item_adapter_lr=[1e-3], user_adapter_lr=[1e-3])

if __name__ == "__main__":
    sweep(__file__, ARGS, SWEEP, nproc=NPROC)
