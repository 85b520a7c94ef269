"""What turns an item's pooled backbone state (n, hidden) into its embedding (n, d): the item tower's head.

linear  Linear(hidden, d) -> GELU (the paper).
moe     UniSRec's MoE adaptor (Hou et al., KDD 2022): k experts, each a parametric whitening of the frozen
        feature, (x - b_i) W_i, mixed by a softmax gate over x G:
            e(x) = sum_i softmax(x G)_i (x - b_i) W_i
        Frozen language-model features are anisotropic (they fill a narrow cone, with a large common mean); a
        learned shift b_i and projection W_i per expert re-centre and decorrelate them for the recommendation
        task, and several experts let one head serve items whose features sit in different regions (the
        source's and the target's). No activation: the user encoder reads the whitened vector itself.

Both keep their parameters under `item_encoder.proj.` (the linear head's keys are the paper's), so what a
checkpoint holds, what `train_head` trains and what a source checkpoint hands over stay one rule.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

HEADS = ("linear", "moe")


class WhiteningExperts(nn.Module):
    """(n, hidden) -> (n, d). At init the gate is uniform (G = 0, as UniSRec) and the shifts are 0, so every
    expert starts as a plain random projection of x (W_i ~ N(0, 0.02)), their mean the output."""

    def __init__(self, hidden: int, d: int, experts: int = 8):
        super().__init__()
        if experts < 1:
            raise ValueError(f"head_experts={experts}: expected at least 1")
        self.experts, self.d = experts, d
        # the k projections side by side in Linear's layout (k*d, hidden): one matmul for all experts
        self.weight = nn.Parameter(torch.empty(experts * d, hidden).normal_(0.0, 0.02))
        self.shift = nn.Parameter(torch.zeros(experts, hidden))   # b_i
        self.gate = nn.Parameter(torch.zeros(hidden, experts))    # G

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        weight = self.weight.view(self.experts, self.d, -1)                      # (k, d, hidden)
        # (x - b_i) W_i = x W_i - b_i W_i: the shift costs a (k, d) constant, not a (n, k, hidden) copy of x
        projected = F.linear(x, self.weight).view(-1, self.experts, self.d)     # (n, k, d)
        offsets = torch.einsum("kh,kdh->kd", self.shift, weight)                 # (k, d)
        gates = torch.softmax(x @ self.gate, dim=-1)                             # (n, k)
        return torch.einsum("nk,nkd->nd", gates, projected - offsets)


class LinearHead(nn.Linear):
    """Linear(hidden, d) then GELU: the paper's head (its keys are `weight` and `bias`, as before)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(super().forward(x))


def make_head(kind: str, hidden: int, d: int, experts: int = 8) -> nn.Module:
    if kind == "linear":
        return LinearHead(hidden, d)
    if kind == "moe":
        return WhiteningExperts(hidden, d, experts)
    raise ValueError(f"item_head={kind!r}: expected one of {', '.join(HEADS)}")
