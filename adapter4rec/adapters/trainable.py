"""The one place that decides what trains. Called before DDP wrapping and before the optimizer is built;
the optimizer then sees only `requires_grad` parameters."""
from __future__ import annotations

import logging
from collections import defaultdict

from torch import nn

log = logging.getLogger(__name__)


def set_trainable(model: nn.Module, tune: str) -> None:
    """tune=all: every parameter trains (pretraining, full fine-tuning).
    tune=frozen: the item-encoder backbone is frozen; projection head and user encoder train."""
    for name, param in model.named_parameters():
        param.requires_grad = not (tune == "frozen" and name.startswith("item_encoder.backbone."))


def trainable_summary(model: nn.Module) -> str:
    """peft-style 'trainable X / total Y (Z%)' plus a per-module breakdown (first two name levels)."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    parts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, param in model.named_parameters():
        group = ".".join(name.split(".")[:2])
        parts[group][1] += param.numel()
        if param.requires_grad:
            parts[group][0] += param.numel()
    lines = [f"trainable {trainable:,} / total {total:,} ({100.0 * trainable / max(total, 1):.4f}%)"]
    lines += [f"  {group}: {t:,} / {n:,}" for group, (t, n) in sorted(parts.items())]
    return "\n".join(lines)
