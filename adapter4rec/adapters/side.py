"""Side network: decoupled PEFT over cached backbone states (in the spirit of IISAN's intra-modal side adapters).

The backbone stays frozen and off the training path. For every item, its pooled states at k chosen layers
s_1 .. s_k (s_k = the backbone's output, what the item tower reads; states/layers.py) are computed once and
cached; the side network reads them and corrects the output state, working in a narrow width r:

    u_j = D_j norm(s_j)                                   hidden -> r, norm = LayerNorm without affine
        (+ E_j norm(m_j) for j < k under side_pooling=both: m_j = layer j's other pooling, mean or CLS)
    z_1 = u_1;  z_j = mu_j z_{j-1} + (1 - mu_j) u_j       j = 2..k, mu_j = sigmoid(g_j), g_j = 0 at init
    z_j = z_j + M_j act(z_j)                              r -> r residual mixing, every j
    h   = s_k + U act(z_k)                                r -> hidden, U zero-initialised -> the projection head

Why this shape:
- a chain from shallow to deep layers with a learned gate per layer lets the network decide how much of each
  layer's view to carry (lexical in the lower layers, semantic in the upper ones), as IISAN's gated fusion;
- norm per layer: intermediate states differ in scale (ViT's are pre-norm residual streams); its affine part
  would be redundant with D_j, and without parameters it needs no backward (the states take no gradient);
- the chain runs in width r, not in the backbone's width: with a full-catalogue softmax every step passes every
  item through the network, and on a CPU the hidden-width element-wise work (norms, residual adds, gates and
  their backward) was two thirds of the step. Now each layer costs one hidden x r matmul (weight gradient
  only) and the only hidden-width work left is the final correction: 2.5x less time for Scientific's 4,385
  items, in measurement (docs/performance.md);
- the residual around the backbone's output with a zero-initialised U makes the network the identity at init:
  a transferred model starts out computing exactly what its source model computed, so transfer never starts
  from a worse point; U gets a gradient at the first step (act(z_k) is not zero), the chain from the second on;
- side_pooling=both gives each intermediate layer a second view: IISAN reads the first token only, which in a
  ViT is one token among the patches (the mean over the patches summarises all of them); the output layer keeps
  the item tower's pooling, so the identity at init is unchanged;
- it works on pooled vectors only, so a step costs O(k hidden r) per item, not the backbone's
  O(layers T hidden^2): the step no longer depends on the backbone's size.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adapter4rec.adapters.bottleneck import ACTIVATIONS, AdapterModule
from adapter4rec.data.store import DTYPES
from adapter4rec.states.layers import pooled_layer_states, states_per_item

# the prepared table (fp32, k + 1 states per item) is kept when it is at most this large; a larger catalogue
# prepares each step's rows instead (the cached table itself is bounded by side_cache_max_gb)
PREPARED_SIDE_LIMIT = 1 << 30


class SideNetwork(AdapterModule):
    """(n, k + m, hidden) pooled layer states -> (n, hidden) corrected output state; the identity on s_k at init.
    The states: s_1 .. s_k (the item tower's pooling at `layers`, s_k the output), then, under both_poolings,
    m_1 .. m_{k-1} (the other pooling of the intermediate layers); m = 0 otherwise."""

    def __init__(self, hidden: int, layers: list[int], r: int, activation: str = "relu", state_dtype: str = "bf16",
                 both_poolings: bool = False):
        super().__init__()
        self.layers = list(layers)  # which backbone layers feed it (for the cache key and the log)
        # its inputs are the states rounded to this dtype, cached or not: caching changes the speed, not the function
        self.state_dtype = state_dtype
        self.hidden = hidden
        self.both_poolings = both_poolings
        k = len(self.layers)
        self.states_per_item = states_per_item(self.layers, both_poolings)
        self.downs = nn.ModuleList(nn.Linear(hidden, r) for _ in range(k))
        # the second view's projections (no bias: D_j's is enough)
        self.other_downs = nn.ModuleList(nn.Linear(hidden, r, bias=False) for _ in range(k - 1)) \
            if both_poolings else None
        self.mixes = nn.ModuleList(nn.Linear(r, r) for _ in range(k))
        self.act = ACTIVATIONS[activation]()
        self.gates = nn.Parameter(torch.zeros(k - 1)) if k > 1 else None  # mu = 0.5 at init
        self.up = nn.Linear(r, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)
        # not parameters, never saved: the cached inputs of every catalogue item, (num_items+1, k + m, hidden) in
        # state_dtype (ContentItemEncoder.cache_backbone sets it; None = read the frozen backbone live), and the
        # prepared form of that table (the table it came from, prepare(table))
        self.table: torch.Tensor | None = None
        self.prepared: tuple | None = None

    def inputs(self, encoder, items: torch.Tensor) -> torch.Tensor:
        """(n, k + m, hidden) fp32 layer states of `items`, cached or from `encoder`'s frozen backbone in eval mode,
        rounded to state_dtype either way (so both paths compute one function)."""
        if self.table is not None:
            return self.table[items].float()  # the table lives where the model runs (on_device)
        was_training = encoder.backbone.training
        encoder.backbone.eval()
        with torch.no_grad():
            states = pooled_layer_states(encoder, items, self.layers, self.both_poolings)
            states = states.to(DTYPES[self.state_dtype]).float()
        encoder.backbone.train(was_training)
        return states

    def item_states(self, encoder, items: torch.Tensor) -> torch.Tensor:
        """(n, hidden) corrected output states of `items` (what the item tower's head reads). With a cached table,
        the parameter-free part (the fp32 conversion and the LayerNorm) is computed once for every item, not at
        every step (it is per row, so the numbers are the same); the whole catalogue, what a full-catalogue
        softmax asks for, is then a slice."""
        table = self.table
        if table is None or table.shape[0] * (table.shape[1] + 1) * table.shape[2] * 4 > PREPARED_SIDE_LIMIT:
            return self(self.inputs(encoder, items))
        if self.prepared is None or self.prepared[0] is not table:  # a new table: prepare it again
            self.prepared = (table, *self.prepare(table.float()))
        _, normed, output = self.prepared  # (k, n+1, hidden), (n+1, hidden)
        if items.dim() == 1 and len(items) == len(output) - 1 and torch.equal(items, torch.arange(
                1, len(output), device=items.device)):
            return self.correct(normed[:, 1:], output[1:])
        return self.correct(normed[:, items], output[items])

    def prepare(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(n, k + m, hidden) states -> (normed (k + m, n, hidden), output state (n, hidden)): the part of the
        forward pass that has no parameters, so a cached table needs it only once (item_states)."""
        normed = F.layer_norm(states, (self.hidden,))  # per row: the same numbers whatever the batch
        return normed.transpose(0, 1).contiguous(), states[:, len(self.layers) - 1].contiguous()

    def correct(self, normed: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        """prepare()'s (normed (k + m, n, hidden), output (n, hidden)) -> (n, hidden) corrected output state."""
        z, k = None, len(self.layers)
        for j, (down, mix) in enumerate(zip(self.downs, self.mixes)):
            u = down(normed[j])  # (n, r)
            if self.other_downs is not None and j < k - 1:
                u = u + self.other_downs[j](normed[k + j])
            z = u if z is None else torch.lerp(u, z, torch.sigmoid(self.gates[j - 1]))  # mu z + (1 - mu) u
            z = z + mix(self.act(z))
        return output + self.up(self.act(z))

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.correct(*self.prepare(states))
