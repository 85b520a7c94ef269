"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021; He et al. 2022) and their wrappers.

Every adapter module here subclasses `AdapterModule`, which is how the trainability rule and the
optimizer's learning-rate groups find them (by type, not by name).

Placement, as wrappers that hold the original module and call it (never re-implement it):
  SerialAdapter(dropout): h = Drop(y); h + delta(h), wrapping the dropout that ends a sub-layer's branch
                         (y = dense(.) in BERT/ViT, the attention / FFN output in SASRec), so BERT computes
                         LN(h + delta(h) + x) as Houlsby et al. and the original code do  -> Houlsby, Pfeiffer,
                         Compacter. ViT (pre-LN) gets h + delta(h) before its residual add.
  ParallelAdapter(out):  out(h, x + delta(x))  where out(h, x) = LN(Drop(h) + x), i.e. the delta of the
                         sub-layer INPUT x is added once, next to the residual (the original added x twice).
  OutputParallelAdapter(out): out(h, x) + delta(read(x)), for ViT's output modules, whose residual is added
                         outside (ViTSelfOutput ignores x, so the form above would silently do nothing);
                         `read` turns x into what the sub-layer itself reads (see inject.PARALLEL_READS).
delta = up(act(down(.))) with `up` zero-initialised, so every wrapper is the identity at init. No dropout
inside delta: Houlsby et al. and the original code apply none (the original built one and never called it).
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class AdapterModule(nn.Module):
    """Marker base class: parameters of AdapterModule instances are the ones PEFT trains."""


class Bottleneck(AdapterModule):
    """delta(x) = up(act(down(x))): (…, d) -> (…, d); up starts at zero (identity when added)."""

    def __init__(self, d: int, r: int, activation: str = "relu"):
        super().__init__()
        self.down = nn.Linear(d, r)
        self.act = ACTIVATIONS[activation]()
        self.up = nn.Linear(r, d)
        nn.init.normal_(self.down.weight, std=0.01)  # the paper's code: N(0, 0.01)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))


class SerialAdapter(nn.Module):
    """base(...) followed by an adapter with its own residual: y + adapter(y)."""

    def __init__(self, base: nn.Module, adapter: nn.Module):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, *args, **kwargs) -> torch.Tensor:
        y = self.base(*args, **kwargs)
        return y + self.adapter(y)


class ParallelAdapter(nn.Module):
    """For a sub-layer output module out(hidden, input_tensor) = LN(Drop(hidden) + input_tensor)
    (BertSelfOutput, BertOutput, our SASRec SublayerOutput): adds adapter(input_tensor) once."""

    def __init__(self, base: nn.Module, adapter: nn.Module):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.base(hidden_states, input_tensor + self.adapter(input_tensor))


class OutputParallelAdapter(nn.Module):
    """For ViT's sub-layer output modules out(hidden, input_tensor): adds adapter(read(input_tensor)) to the
    output. ViTSelfOutput = Drop(dense(hidden)), its input_tensor being the attention's input layernorm_before(h)
    (read = identity); ViTOutput = Drop(dense(hidden)) + h with input_tensor = h, while the FFN reads
    layernorm_after(h) (read = the layer's own layernorm_after, called again: a LayerNorm is cheap, and no
    state is kept between modules)."""

    def __init__(self, base: nn.Module, adapter: nn.Module, read: nn.Module | None = None):
        super().__init__()
        self.base, self.adapter = base, adapter
        # a list, so the sibling module is not registered (and saved) a second time under this wrapper
        self.read = [read] if read is not None else []

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        sublayer_input = self.read[0](input_tensor) if self.read else input_tensor
        return self.base(hidden_states, input_tensor) + self.adapter(sublayer_input)
