"""LoRA (Hu et al. 2021) through loralib, KEEPING the pretrained weights.

The original built a fresh `lora.Linear` after loading the source checkpoint, throwing the pretrained
query/value weights away. Here the new layer receives the old layer's weight (and bias), and the load is
checked: only lora_A / lora_B may be new. `merge_weights=False`, so `model.eval()` never rewrites
`weight` in place (a saved state dict is always the unmerged one). lora_B starts at zero: identity at init.
"""
from __future__ import annotations

import loralib
from torch import nn


def to_lora(base: nn.Linear, r: int, alpha: float) -> loralib.Linear:
    if not isinstance(base, nn.Linear):
        raise TypeError(f"LoRA wraps nn.Linear layers, got {type(base).__name__}")
    layer = loralib.Linear(base.in_features, base.out_features, r=r, lora_alpha=alpha,
                           bias=base.bias is not None, merge_weights=False)
    layer = layer.to(device=base.weight.device, dtype=base.weight.dtype)
    result = layer.load_state_dict(base.state_dict(), strict=False)
    if sorted(result.missing_keys) != ["lora_A", "lora_B"] or result.unexpected_keys:
        raise RuntimeError(f"LoRA: unexpected key mismatch copying the pretrained layer: {result}")
    return layer


def is_lora_parameter(name: str) -> bool:
    return name.endswith(".lora_A") or name.endswith(".lora_B")
