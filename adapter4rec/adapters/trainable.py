"""The one place that decides what trains, and at which learning rate.

Called after adapters are added and before DDP wrapping and the optimizer: DDP registers gradient hooks
for `requires_grad` parameters at construction, and the optimizer sees only trainable parameters.
"""
from __future__ import annotations

from collections import defaultdict

from torch import nn

from adapter4rec.adapters.bottleneck import AdapterModule
from adapter4rec.adapters.lora import is_lora_parameter
from adapter4rec.config import Config


def adapter_parameter_names(model: nn.Module) -> set[str]:
    """Parameters that belong to PEFT modules: AdapterModule subtrees, LoRA factors, the Compacter rule."""
    names = set()
    for module_name, module in model.named_modules():
        if isinstance(module, AdapterModule):
            prefix = f"{module_name}." if module_name else ""
            names.update(prefix + n for n, _ in module.named_parameters())
    names.update(n for n, _ in model.named_parameters() if is_lora_parameter(n))
    return names


def set_trainable(model: nn.Module, cfg: Config) -> None:
    """tune=all: everything trains. tune=peft: pretrained parameters are frozen; adapter modules train, plus
    the projection head (train_head), the user encoder (train_user_encoder), LayerNorms (tune_layernorm) and biases
    (tune_bias) when asked, and a learned temperature (learn_temperature: a scalar the user asked to learn, part of
    no pretrained model). Settings that leave nothing to train stop with a one-line SystemExit naming them
    (nothing_trainable)."""
    if cfg.tune == "all":
        for param in model.parameters():
            param.requires_grad = True
        return
    train = adapter_parameter_names(model)
    # the target's ID table and fusion (item_tower=fused) are new on the target under every `tune`, like adapters
    train.update(n for n, _ in model.named_parameters() if n.startswith("item_encoder.id_fusion."))
    if cfg.train_head:
        train.update(n for n, _ in model.named_parameters() if n.startswith("item_encoder.proj."))
    if cfg.train_user_encoder:
        train.update(n for n, _ in model.named_parameters() if n.startswith("user_encoder."))
    if cfg.tune_layernorm:
        for module_name, module in model.named_modules():
            if isinstance(module, nn.LayerNorm):
                train.update(f"{module_name}.{n}" for n, _ in module.named_parameters())
    if cfg.tune_bias:
        train.update(n for n, _ in model.named_parameters() if n.endswith(".bias"))
    if cfg.learn_temperature:
        train.update(n for n, _ in model.named_parameters() if n.startswith("scorer."))
    for name, param in model.named_parameters():
        param.requires_grad = name in train
    if not cfg.zero_shot and not any(param.requires_grad for param in model.parameters()):  # AdamW needs some
        raise SystemExit(f"adapter4rec: config: {nothing_trainable(model, cfg)}")


# the settings that add trainable parameters under tune=peft
PEFT_OPTIONS = ("adapter", "train_head", "train_user_encoder", "tune_layernorm", "tune_bias", "learn_temperature")


def nothing_trainable(model: nn.Module, cfg: Config) -> str:
    """Why tune=peft leaves every parameter of `model` frozen, and what to set instead (one line)."""
    settings = ", ".join(f"{k}={str(getattr(cfg, k)).lower()}" for k in PEFT_OPTIONS)
    why = ""
    if cfg.train_head and not any(n.startswith("item_encoder.proj.") for n, _ in model.named_parameters()):
        why = f" (item_tower={cfg.item_tower} has no projection head for train_head to train)"
    return (f"tune=peft with {settings} leaves no parameter to train{why}; add something that trains: "
            f"adapter=houlsby (or lora, parallel, ...), train_head=true, train_user_encoder=true, tune_layernorm=true "
            f"or tune_bias=true (the frozen-features baseline is adapter=none train_head=true "
            f"train_user_encoder=true), or tune=all to fine-tune every parameter")


def lr_group(name: str, adapter_names: set[str]) -> str:
    """The paper's four groups: item/user adapters, the item-encoder backbone, and everything else.

    An adapter parameter's encoder is read off its name, so every PEFT module (the Compacter's shared rule
    included) must live inside the encoder it adapts; one outside both is refused rather than given a guess."""
    if name in adapter_names:
        for prefix, group in (("user_encoder.", "user_adapter"), ("item_encoder.", "item_adapter")):
            if name.startswith(prefix):
                return group
        raise ValueError(f"adapter parameter {name} is in neither encoder: which adapter learning rate applies "
                         f"is unknown (register it inside item_encoder or user_encoder)")
    return "backbone" if name.startswith("item_encoder.backbone.") else "rest"


def group_learning_rates(cfg: Config) -> dict[str, float]:
    return {"item_adapter": cfg.item_adapter_lr, "user_adapter": cfg.user_adapter_lr,
            "backbone": cfg.item_encoder_lr, "rest": cfg.lr}


def trainable_state(model: nn.Module) -> dict:
    """State dict of the trainable parameters only (what a PEFT checkpoint stores)."""
    names = {n for n, p in model.named_parameters() if p.requires_grad}
    return {k: v for k, v in model.state_dict().items() if k in names}


def trainable_summary(model: nn.Module) -> str:
    """peft-style 'trainable X / total Y (Z%)' plus a breakdown by module (first two name levels), with
    adapter parameters counted apart."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    adapters = adapter_parameter_names(model)
    parts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for name, param in model.named_parameters():
        group = ".".join(name.split(".")[:2]) + (" [adapters]" if name in adapters else "")
        parts[group][1] += param.numel()
        if param.requires_grad:
            parts[group][0] += param.numel()
    lines = [f"trainable {trainable:,} / total {total:,} ({100.0 * trainable / max(total, 1):.4f}%)"]
    lines += [f"  {group}: {t:,} / {n:,}" for group, (t, n) in sorted(parts.items())]
    return "\n".join(lines)

