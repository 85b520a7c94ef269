"""Side network: decoupled PEFT over cached backbone states (in the spirit of IISAN's intra-modal side adapters).

The backbone stays frozen and off the training path. For every item, its pooled states at k chosen layers
s_1 .. s_k (s_k = the backbone's output, what the item tower reads; states/layers.py) are computed once and
cached; the side network reads them and corrects the output state:

    z_1 = LN_1(s_1);  z_1 += B_1(z_1)
    z_j = mu_j z_{j-1} + (1 - mu_j) LN_j(s_j);  z_j += B_j(z_j)      j = 2..k, mu_j = sigmoid(g_j), g_j = 0 at init
    h   = s_k + B_out(z_k)                                            -> the item tower's projection head

B = bottleneck blocks (hidden -> r -> hidden, `up` zero-initialised). Why this shape:
- a chain from shallow to deep layers with a learned gate per layer lets the network decide how much of each
  layer's view to carry (lexical in the lower layers, semantic in the upper ones), as IISAN's gated fusion;
- LN per layer: intermediate states differ in scale (ViT's are pre-norm residual streams);
- the residual around the backbone's output with a zero-initialised B_out makes the network the identity at
  init: a transferred model starts out computing exactly what its source model computed, so transfer never
  starts from a worse point; B_out's up-projection gets a gradient at the first step (its input z_k is not
  zero), the chain's blocks from the second step on;
- it works in the backbone's width on pooled vectors only, so a step costs O(k hidden r) per item, not the
  backbone's O(layers T hidden^2): the step no longer depends on the backbone's size.
"""
from __future__ import annotations

import torch
from torch import nn

from adapter4rec.adapters.bottleneck import AdapterModule, Bottleneck


class SideNetwork(AdapterModule):
    """(n, k, hidden) pooled layer states -> (n, hidden) corrected output state; the identity on s_k at init."""

    def __init__(self, hidden: int, layers: list[int], r: int, activation: str = "relu", state_dtype: str = "bf16"):
        super().__init__()
        self.layers = list(layers)  # which backbone layers feed it (for the cache key and the log)
        # its inputs are the states rounded to this dtype, cached or not: caching changes the speed, not the function
        self.state_dtype = state_dtype
        k = len(self.layers)
        self.norms = nn.ModuleList(nn.LayerNorm(hidden) for _ in range(k))
        self.blocks = nn.ModuleList(Bottleneck(hidden, r, activation) for _ in range(k))
        self.gates = nn.Parameter(torch.zeros(k - 1)) if k > 1 else None  # mu = 0.5 at init
        self.out = Bottleneck(hidden, r, activation)

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        z = self.norms[0](states[:, 0])
        z = z + self.blocks[0](z)
        for j in range(1, states.shape[1]):
            mu = torch.sigmoid(self.gates[j - 1])
            z = mu * z + (1 - mu) * self.norms[j](states[:, j])
            z = z + self.blocks[j](z)
        return states[:, -1] + self.out(z)
