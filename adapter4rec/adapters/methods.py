"""add_adapters(model, cfg): put the configured PEFT method into the item encoder, the user encoder or both.

Called after the source checkpoint is loaded and before trainability is decided. Returns, per encoder,
the names of the modules it changed (logged, and checked against the expected count in `inject`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from adapter4rec.adapters.bottleneck import Bottleneck, OutputParallelAdapter, ParallelAdapter, SerialAdapter
from adapter4rec.adapters.compacter import CompacterBottleneck, PHMRule
from adapter4rec.adapters.inject import PARALLEL_ADDS_TO_OUTPUT, PARALLEL_READS, family_of, inject
from adapter4rec.adapters.kadapter import KAdapter, KAdapterBackbone
from adapter4rec.adapters.lora import to_lora
from adapter4rec.adapters.prompt import PromptBackbone, VisualPromptBackbone
from adapter4rec.adapters.side import SideNetwork
from adapter4rec.config import Config
from adapter4rec.models.user_encoder import KAdapterUserEncoder
from adapter4rec.states.layers import parse_side_layers

METHODS = ("none", "houlsby", "parallel", "pfeiffer", "compacter", "lora", "kadapter", "prompt", "side")


@dataclass
class Site:
    """One encoder to adapt: where it hangs in the model and its sizes."""
    tower: str         # "item" or "user": which encoder the site is in
    encoder: nn.Module
    family: str
    width: int         # hidden size d of the encoder
    size: int          # bottleneck / LoRA rank / K-Adapter width
    heads: int         # K-Adapter heads
    num_layers: int


def sites(model: nn.Module, cfg: Config) -> list[Site]:
    out = []
    if cfg.adapter_where in ("item", "both"):
        backbone = getattr(model.item_encoder, "backbone", None)
        if backbone is None:
            raise SystemExit("adapter4rec: adapters need a content item encoder (item_tower=modal), not item_tower=id")
        config = backbone.config
        out.append(Site("item", backbone, family_of(backbone), config.hidden_size, cfg.item_adapter_size,
                        cfg.kadapter_item_heads, config.num_hidden_layers))
    if cfg.adapter_where in ("user", "both"):  # (with adapter=side: `user_adapter`, houlsby by default)
        out.append(Site("user", model.user_encoder, "sasrec", cfg.embedding_dim, cfg.user_adapter_size,
                        cfg.kadapter_user_heads, cfg.num_blocks))
    return out


def chosen_layers(num_layers: int, top: int) -> set[int]:
    """All layers (top=0) or the top `top` layers."""
    return set(range(num_layers)) if top <= 0 else set(range(max(num_layers - top, 0), num_layers))


def sublayer_slots(cfg: Config, method: str) -> list[str]:
    which = cfg.adapter_sublayers
    if which == "auto":
        which = "ffn" if method == "pfeiffer" else "both"
    return ["attention", "ffn"] if which == "both" else [which]


def method_of(site: Site, cfg: Config) -> str:
    """The PEFT method of one encoder: `adapter`, or `user_adapter` in the user encoder (side -> houlsby)."""
    if site.tower == "user" and (cfg.user_adapter != "auto" or cfg.adapter == "side"):
        return "houlsby" if cfg.user_adapter == "auto" else cfg.user_adapter
    return cfg.adapter


def add_adapters(model: nn.Module, cfg: Config) -> dict[str, list[str]]:
    if cfg.adapter == "none":
        return {}
    changed: dict[str, list[str]] = {}
    for site in sites(model, cfg):
        layers = chosen_layers(site.num_layers, cfg.adapter_layers)
        changed[site.tower] = _add(model, site, layers, cfg, method_of(site, cfg))
    return changed


def _add(model: nn.Module, site: Site, layers: set[int], cfg: Config, method: str) -> list[str]:
    d, r = site.width, site.size
    if method == "side":  # decoupled: nothing goes into the backbone; the item tower reads cached layer states
        model.item_encoder.side = SideNetwork(d, parse_side_layers(cfg.side_layers, site.num_layers), r,
                                              cfg.adapter_activation, cfg.side_cache_dtype,
                                              both_poolings=cfg.side_pooling == "both")
        return ["item_encoder.side"]
    if method in ("houlsby", "pfeiffer"):
        return inject(site.encoder, site.family, sublayer_slots(cfg, method), layers,
                      lambda slot, m, parent: SerialAdapter(m, Bottleneck(d, r, cfg.adapter_activation)))
    if method == "parallel":
        slots = [s + "_out" for s in sublayer_slots(cfg, method)]
        if site.family in PARALLEL_ADDS_TO_OUTPUT:
            reads = PARALLEL_READS[site.family]
            return inject(site.encoder, site.family, slots, layers, lambda slot, m, parent: OutputParallelAdapter(
                m, Bottleneck(d, r, cfg.adapter_activation), getattr(parent, reads[slot]) if reads[slot] else None))
        return inject(site.encoder, site.family, slots, layers,
                      lambda slot, m, parent: ParallelAdapter(m, Bottleneck(d, r, cfg.adapter_activation)))
    if method == "compacter":
        # One rule per encoder, shared by every PHM layer in it (the Compacter paper shares it across the layers
        # of one model). Registered on the encoder, so its name says which encoder it serves and it trains at
        # that encoder's adapter learning rate (trainable.lr_group); the original shared one rule over both
        # encoders and trained it at the recommender's `lr`.
        rule = PHMRule(cfg.compacter_n, cfg.phm_init_range)
        site.encoder.compacter_rule = rule
        return inject(site.encoder, site.family, sublayer_slots(cfg, method), layers,
                      lambda slot, m, parent: SerialAdapter(m, CompacterBottleneck(d, r, rule)))
    if method == "lora":
        return inject(site.encoder, site.family, ["query", "value"], layers,
                      lambda slot, m, parent: to_lora(m, r, cfg.lora_alpha))
    if method == "kadapter":
        side = KAdapter(d, r, site.heads, sorted(layers) if cfg.adapter_layers else
                        _first_last(site.num_layers), cfg.adapter_dropout)
        if site.tower == "item":
            model.item_encoder.backbone = KAdapterBackbone(site.encoder, side)
            return ["item_encoder.backbone"]
        model.user_encoder = KAdapterUserEncoder(site.encoder, side)
        return ["user_encoder"]
    if method == "prompt":
        if site.tower == "user":
            raise SystemExit("adapter4rec: prompt tuning is defined for the item encoder; set adapter_where=item")
        generator = torch.Generator().manual_seed(cfg.seed)
        kind = VisualPromptBackbone if site.family == "vit" else PromptBackbone
        model.item_encoder.backbone = kind(site.encoder, cfg.prompt_tokens, generator)
        return ["item_encoder.backbone"]
    raise ValueError(f"unknown adapter {method!r}")


def _first_last(num_layers: int) -> list[int]:
    """The paper's K-Adapter default (layers 0 and 11 of BERT-base): the first and the last layer."""
    return sorted({0, num_layers - 1})
