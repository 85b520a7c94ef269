"""K-Adapter (Wang et al. 2021): a small side Transformer fed by chosen layers' hidden states.

For chosen layers k_1 < k_2 < ...: s = 0; s = A_j(h_{k_j} + s) with A_j(x) = x + up(blocks(down(x))), two
post-LN Transformer blocks of width r in between. The result joins the backbone's last hidden state as
last + fuse(s), with `fuse` zero-initialised: the identity at init (the original concatenated and projected,
which changes the output at init). Attention inside the side network uses the SAME mask as the backbone:
token padding for the item encoder, causal + padding for the user encoder (the original used no mask at
all, so in the user encoder position t saw item t+1, its own training target).
"""
from __future__ import annotations

import torch
from torch import nn

from adapter4rec.adapters.bottleneck import AdapterModule
from adapter4rec.models.user_encoder import Block


class KAdapterLayer(nn.Module):
    def __init__(self, d: int, r: int, heads: int, dropout: float):
        super().__init__()
        self.down = nn.Linear(d, r)
        self.blocks = nn.ModuleList(Block(r, heads, dropout) for _ in range(2))
        self.up = nn.Linear(r, d)
        for linear in (self.down, self.up):
            nn.init.normal_(linear.weight, std=2e-4)  # the paper's code: N(0, 2e-4)
            nn.init.zeros_(linear.bias)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        h = self.down(x)
        for block in self.blocks:
            h = block(h, mask)
        return x + self.up(h)


class KAdapter(AdapterModule):
    """Side network over hidden states (…, L, d) of chosen layers; returns the fused last hidden state."""

    def __init__(self, d: int, r: int, heads: int, layers: list[int], dropout: float):
        super().__init__()
        if r % heads:
            raise ValueError(f"K-Adapter: width {r} is not divisible by {heads} heads")
        self.layers = list(layers)
        self.adapters = nn.ModuleList(KAdapterLayer(d, r, heads, dropout) for _ in self.layers)
        self.fuse = nn.Linear(d, d)
        nn.init.zeros_(self.fuse.weight)
        nn.init.zeros_(self.fuse.bias)

    def forward(self, hidden_states: list[torch.Tensor], mask: torch.Tensor,
                last: torch.Tensor | None = None) -> torch.Tensor:
        """hidden_states[k]: output of layer k; mask: (B, 1, L, L) bool, True = may attend; last: the
        encoder's final output when it differs from the last layer's (ViT applies a final LayerNorm)."""
        side = torch.zeros_like(hidden_states[-1])
        for k, adapter in zip(self.layers, self.adapters):
            side = adapter(hidden_states[k] + side, mask)
        return (hidden_states[-1] if last is None else last) + self.fuse(side)


class KAdapterBackbone(nn.Module):
    """Wraps a Hugging Face encoder: same call signature, `last_hidden_state` fused with the side network.

    HF hidden_states[0] is the embedding output, hidden_states[k+1] the output of layer k; `layers` are
    layer indices k (0-based), as in the paper's `k_adapter_bert_list=0,11`."""

    def __init__(self, base: nn.Module, kadapter: KAdapter):
        super().__init__()
        self.base, self.kadapter = base, kadapter
        self.config = base.config

    def forward(self, attention_mask=None, **inputs):
        """inputs: input_ids (text) or pixel_values (images, no padding: every token valid)."""
        if attention_mask is not None:
            inputs["attention_mask"] = attention_mask
        out = self.base(output_hidden_states=True, **inputs)
        hidden = list(out.hidden_states[1:])  # hidden[k] = output of layer k
        if attention_mask is None:
            attention_mask = torch.ones(hidden[-1].shape[:2], dtype=torch.long, device=hidden[-1].device)
        valid = attention_mask.bool()
        # token padding only (bidirectional); each token also attends to itself so no row is empty
        eye = torch.eye(valid.shape[1], dtype=torch.bool, device=valid.device)
        mask = (valid[:, None, None, :] | eye).contiguous()
        out.last_hidden_state = self.kadapter(hidden, mask, out.last_hidden_state)
        return out
