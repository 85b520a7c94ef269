"""The optimizer and the learning-rate schedule.

AdamW over the trainable parameters only, in the paper's learning-rate groups (adapters/trainable.py decides
the groups); the schedule is a pure function of the global step, so a resumed run continues it exactly
without any saved scheduler state.
"""
from __future__ import annotations

import math

import torch

from adapter4rec.adapters.trainable import adapter_parameter_names, group_learning_rates, lr_group
from adapter4rec.config import Config


def build_optimizer(model: torch.nn.Module, cfg: Config) -> torch.optim.Optimizer:
    """AdamW over trainable parameters only, in the paper's learning-rate groups (item/user adapters,
    backbone, rest); weight decay on matrices only. Each group keeps its configured rate as `base_lr`."""
    adapters = adapter_parameter_names(model)
    rates = group_learning_rates(cfg)
    groups: dict[tuple[str, bool], list] = {}
    for name, param in model.named_parameters():
        if param.requires_grad:
            groups.setdefault((lr_group(name, adapters), param.dim() >= 2), []).append(param)
    return torch.optim.AdamW([
        {"params": params, "lr": rates[group], "base_lr": rates[group], "name": group,
         "weight_decay": cfg.weight_decay if decay else 0.0}
        for (group, decay), params in groups.items()])


def schedule_factor(cfg: Config, step: int, total_steps: int) -> float:
    """Multiplier of every group's learning rate at global step `step` (0-based) of `total_steps`: linear warmup
    from 1/warmup_steps to 1 over the first warmup_steps steps, then constant, linear to 0 or cosine to 0 over
    the remaining steps."""
    if cfg.warmup_steps and step < cfg.warmup_steps:
        return (step + 1) / cfg.warmup_steps
    if cfg.lr_schedule == "constant":
        return 1.0
    done = min(max(step - cfg.warmup_steps, 0) / max(total_steps - cfg.warmup_steps, 1), 1.0)
    return 1.0 - done if cfg.lr_schedule == "linear" else 0.5 * (1.0 + math.cos(math.pi * done))


def apply_schedule(optimizer: torch.optim.Optimizer, cfg: Config, step: int, total_steps: int) -> None:
    factor = schedule_factor(cfg, step, total_steps)
    for group in optimizer.param_groups:
        group["lr"] = group["base_lr"] * factor
