"""Compacter (Karimi Mahabadi et al. 2021): a bottleneck whose projections are PHM layers.

PHM weight: W = sum_i kron(S_i, A_i @ B_i), S (n, n, n) the "rule" matrices shared by every PHM layer of one
encoder (each adapted encoder has its own, trained at its adapter learning rate: methods.py), A_i (in/n, 1)
and B_i (1, out/n) rank-1 factors per layer. The up-projection's B starts at zero, so the adapter is exactly
the identity at init (the original had no skip connection and replaced each sub-layer output by ~0 at init).
"""
from __future__ import annotations

import math

import torch
from torch import nn

from adapter4rec.adapters.bottleneck import ACTIVATIONS, AdapterModule


class PHMRule(AdapterModule):
    """The n x n x n rule matrices, one instance shared by all PHM layers (init N(0, init_range))."""

    def __init__(self, n: int, init_range: float = 1e-4):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n, n, n) * init_range)


class PHMLinear(nn.Module):
    def __init__(self, d_in: int, d_out: int, rule: PHMRule, zero_init: bool = False):
        super().__init__()
        n = rule.weight.shape[0]
        if d_in % n or d_out % n:
            raise ValueError(f"Compacter: dimensions {d_in} -> {d_out} must be divisible by "
                             f"compacter_n={n}")
        # a list, so the shared module is not registered once per layer; add_adapters registers it on the encoder
        self.rule = [rule]
        gain = math.sqrt(2.0)  # glorot-uniform with gain sqrt(2), as the Compacter code
        bound_a = gain * math.sqrt(6.0 / (d_in // n + 1))
        bound_b = gain * math.sqrt(6.0 / (1 + d_out // n))
        self.left = nn.Parameter(torch.empty(n, d_in // n, 1).uniform_(-bound_a, bound_a))
        self.right = nn.Parameter(torch.zeros(n, 1, d_out // n) if zero_init else
                                  torch.empty(n, 1, d_out // n).uniform_(-bound_b, bound_b))
        self.bias = nn.Parameter(torch.zeros(d_out))

    def weight(self) -> torch.Tensor:
        factors = self.left @ self.right                 # (n, in/n, out/n)
        rule = self.rule[0].weight                       # (n, n, n)
        n, a, b = factors.shape
        # kron(S_i, F_i) summed over i: (n, n, a, b) -> (n*a, n*b)
        w = torch.einsum("ipq,iab->paqb", rule, factors).reshape(n * a, n * b)
        return w                                         # (in, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x @ self.weight().to(x.dtype) + self.bias.to(x.dtype)


class CompacterBottleneck(AdapterModule):
    """delta(x) = up(act(down(x))) with PHM projections; wrapped by SerialAdapter (own residual)."""

    def __init__(self, d: int, r: int, rule: PHMRule, activation: str = "gelu"):
        super().__init__()
        self.down = PHMLinear(d, r, rule)
        self.act = ACTIVATIONS[activation]()
        self.up = PHMLinear(r, d, rule, zero_init=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.act(self.down(x)))
