"""Bottleneck adapters (Houlsby et al. 2019; Pfeiffer et al. 2021; He et al. 2022) and their wrappers.

Every adapter module here subclasses `AdapterModule`, which is how the trainability rule and the
optimizer's learning-rate groups find them (by type, not by name).

Placement, as wrappers that hold the original module and call it (never re-implement it):
  SerialAdapter(dense):  y = dense(h);  y + delta(y)                    -> Houlsby, Pfeiffer, Compacter
  ParallelAdapter(out):  out(h, x + delta(x))  where out(h, x) = LN(Drop(h) + x), i.e. the delta of the
                         sub-layer INPUT x is added once, next to the residual (the original added x twice).
  OutputParallelAdapter(out): out(h, x) + delta(x), for ViT's output modules, whose residual is added
                         outside (ViTSelfOutput ignores x, so the form above would silently do nothing).
delta = up(drop(act(down(.)))) with `up` zero-initialised, so every wrapper is the identity at init.
"""
from __future__ import annotations

import torch
from torch import nn

ACTIVATIONS = {"relu": nn.ReLU, "gelu": nn.GELU, "tanh": nn.Tanh}


class AdapterModule(nn.Module):
    """Marker base class: parameters of AdapterModule instances are the ones PEFT trains."""


class Bottleneck(AdapterModule):
    """delta(x) = up(drop(act(down(x)))): (…, d) -> (…, d); up starts at zero (identity when added)."""

    def __init__(self, d: int, r: int, activation: str = "relu", dropout: float = 0.0):
        super().__init__()
        self.down = nn.Linear(d, r)
        self.act = ACTIVATIONS[activation]()
        self.drop = nn.Dropout(dropout)
        self.up = nn.Linear(r, d)
        nn.init.normal_(self.down.weight, std=0.01)  # the paper's code: N(0, 0.01)
        nn.init.zeros_(self.down.bias)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.drop(self.act(self.down(x))))


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
    """For ViT's sub-layer output modules out(hidden, input_tensor): adds adapter(input_tensor) to the output.
    ViTSelfOutput = Drop(dense(hidden)) (input_tensor = the attention's input, residual added by ViTLayer);
    ViTOutput = Drop(dense(hidden)) + input_tensor."""

    def __init__(self, base: nn.Module, adapter: nn.Module):
        super().__init__()
        self.base, self.adapter = base, adapter

    def forward(self, hidden_states: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.base(hidden_states, input_tensor) + self.adapter(input_tensor)
