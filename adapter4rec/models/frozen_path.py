"""The frozen part of an item backbone, computed once per item (not once per step): the item encoder's frozen path.

`frozen_path(encoder, store, limit)` picks what can be cached, given which backbone parameters train:
- none: `PooledRows`, every item's pooled output (n+1, hidden); a step gathers its items' rows.
- only the top layers (from layer k up: adapters or LoRA in the top layers only, LayerNorm-only tuning of a ViT's
  final norm, ...): `PrefixCache`, the hidden states entering layer k (n+1, T, hidden) fp32 — T = the longest
  title, or 1 + patches for images; a step gathers the rows of its distinct items (trimmed to the batch's longest
  title) and runs only layers k.. (and the ViT's final LayerNorm) on them.
Both give `pooled(items)` -> (n, hidden), what the head reads. The records live in a state store (states/layers.py
into data/store.py: in memory, or keyed on disk and reused by later runs). The side network's cached inputs are
the side network's own (adapters/side.py).

Exact in eval mode (tested). In training the frozen part applies no dropout (it was computed in eval mode); the
trainable layers keep theirs. Only plain Hugging Face encoders (`embeddings` + `encoder.layer`) qualify for the
prefix: prompt tuning changes the embeddings' output and K-Adapter reads every layer, so their backbones are never
prefix-cached. A prefix larger than `limit_bytes` is not built.
"""
from __future__ import annotations

import logging

import torch
from torch import nn
from transformers.modeling_attn_mask_utils import _prepare_4d_attention_mask_for_sdpa

from adapter4rec.data.store import on_device
from adapter4rec.states.layers import layer_state_table, prefix_state_table

log = logging.getLogger(__name__)


def layers_of(backbone: nn.Module) -> nn.ModuleList | None:
    encoder = getattr(backbone, "encoder", None)
    if not hasattr(backbone, "embeddings") or not isinstance(getattr(encoder, "layer", None), nn.ModuleList):
        return None
    return encoder.layer


def frozen_prefix_depth(backbone: nn.Module) -> int:
    """How many bottom layers (with the embeddings) hold no trainable parameter; 0 = nothing to cache."""
    layers = layers_of(backbone)
    if layers is None or any(p.requires_grad for p in backbone.embeddings.parameters()):
        return 0
    for i, layer in enumerate(layers):
        if any(p.requires_grad for p in layer.parameters()):
            return i
    return len(layers)


def extended_mask(backbone: nn.Module, attention_mask: torch.Tensor | None, dtype: torch.dtype):
    """The 4-D additive mask the backbone's own forward would build (None for images: no padding)."""
    if attention_mask is None:
        return None
    if getattr(backbone.config, "_attn_implementation", "eager") == "sdpa":
        return _prepare_4d_attention_mask_for_sdpa(attention_mask, dtype, tgt_len=attention_mask.shape[1])
    return backbone.get_extended_attention_mask(attention_mask, attention_mask.shape, dtype=dtype)


def pool_states(hidden: torch.Tensor, mask: torch.Tensor | int, pooling: str) -> torch.Tensor:
    """(n, T', h) last-layer states -> (n, h). cls: the first token. mean: the mean over the item's own tokens:
    for text `mask` (n, T) marks the real tokens, and tokens a prompt inserted after the first one (T' > T) are
    left out; for images `mask` is the number of patches, the last tokens ([CLS] (prompts) patches)."""
    if pooling == "cls":
        return hidden[:, 0]
    if isinstance(mask, int):
        return hidden[:, -mask:].mean(1)
    extra = hidden.shape[1] - mask.shape[1]
    own = torch.cat([hidden[:, :1], hidden[:, 1 + extra:]], 1) if extra else hidden
    weights = mask.unsqueeze(-1).to(own.dtype)
    return (own * weights).sum(1) / weights.sum(1).clamp(min=1.0)


def run_layers(layers, hidden: torch.Tensor, mask) -> torch.Tensor:
    for layer in layers:
        out = layer(hidden, attention_mask=mask) if mask is not None else layer(hidden)
        hidden = out[0] if isinstance(out, tuple) else out  # BertLayer returns a tuple, ViTLayer a tensor
    return hidden


class PooledRows:
    """Every item's pooled backbone output (num_items+1, hidden): the whole backbone is frozen."""

    def __init__(self, table: torch.Tensor):
        self.table = table

    def pooled(self, items: torch.Tensor) -> torch.Tensor:
        return self.table[items]


class PrefixCache:
    """Hidden states entering layer `depth` for every item; `pooled(items)` runs the rest of the backbone."""

    def __init__(self, encoder, depth: int):
        self.encoder, self.depth = encoder, depth
        self.layers = layers_of(encoder.backbone)
        self.states: torch.Tensor | None = None  # (num_items+1, T, hidden) fp32

    def build(self, store, limit_bytes: int) -> bool:
        """Get the states from `store` (data/store.py) or compute them into it; False when over the limit."""
        n, backbone = self.encoder.num_items, self.encoder.backbone
        width, hidden = self.encoder.sequence_width(), backbone.config.hidden_size
        if (n + 1) * width * hidden * 4 > limit_bytes:
            log.info("frozen-prefix cache of %d items x %d x %d floats exceeds the limit: not built", n + 1, width,
                     hidden)
            return False

        def run_prefix(items):
            embedded, mask = self.encoder.embed(items)
            return run_layers(self.layers[:self.depth], embedded, extended_mask(backbone, mask, embedded.dtype))
        frozen = [backbone.embeddings, *self.layers[:self.depth]]  # the key: only what the states depend on
        table = prefix_state_table(self.encoder, store, self.depth, run_prefix, frozen)
        self.states = on_device(table, self.encoder.proj.weight.device)
        return True

    def pooled(self, items: torch.Tensor) -> torch.Tensor:
        """(n, hidden) pooled states for `items`, running only the trainable top of the backbone."""
        mask = self.encoder.attention_mask(items)  # (n, T_batch) or None
        hidden = self.states[items] if mask is None else self.states[items, :mask.shape[1]]
        backbone = self.encoder.backbone
        dtype = torch.get_autocast_dtype(hidden.device.type) if torch.is_autocast_enabled(hidden.device.type) \
            else hidden.dtype
        out = run_layers(self.layers[self.depth:], hidden, extended_mask(backbone, mask, dtype))
        norm = getattr(backbone, "layernorm", None)  # ViT / MAE end with a LayerNorm; BERT does not
        out = norm(out) if norm is not None else out
        return pool_states(out, mask if mask is not None else self.encoder.patches(), self.encoder.pooling)


def frozen_path(encoder, store, limit_bytes: int) -> tuple[PooledRows | PrefixCache | None, str]:
    """(the cached frozen part of `encoder`'s backbone, or None where nothing is frozen or it is over the limit;
    what was cached, in words)."""
    backbone = encoder.backbone
    device = encoder.proj.weight.device
    if not any(p.requires_grad for p in backbone.parameters()):
        top = backbone.config.num_hidden_layers
        table = on_device(layer_state_table(encoder, store, [top], "fp32"), device)[:, 0]
        return PooledRows(table), f"the whole backbone ({encoder.pooling}-pooled states)"
    depth = frozen_prefix_depth(backbone)
    if depth > 0:
        prefix = PrefixCache(encoder, depth)
        if prefix.build(store, limit_bytes):
            return prefix, f"the embeddings and the {depth} frozen bottom layer(s)"
    return None, ""
