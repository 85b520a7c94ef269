"""ID + content item towers: a target-domain ID embedding fused with the item's content embedding.

The content path (text or image backbone, frozen cache, side network or adapters, then the head) gives c (n, d);
the ID table gives e (n, d) for the items it has trained; `item_fusion` says how they combine:
  sum     c + e                              (UniSRec's transductive setting)
  concat  Linear([c; e]) -> d, initialised to c + e, so it starts where `sum` does and learns beyond it
  gate    g * c + (1 - g) * e, g = sigmoid(Linear([c; e])) per dimension, 1/2 at init
Items that never occur in the training windows (cold items; new items given only their text) have no trained
ID: they are embedded by the content path alone, c, so a fused model ranks them as a text model would.
`id_dropout` drops the ID of that share of a step's items during training (MISSRec's item drop), so the content
path alone stays a usable embedding for the cold items that evaluation and recommendation meet.

The ID table and the fusion live under `item_encoder.id_fusion.`: target-only parameters that a source
checkpoint never provides (its items are another domain's) and that train under every `tune`.
"""
from __future__ import annotations

import torch
from torch import nn

from adapter4rec.models.user_encoder import init_weight

FUSIONS = ("sum", "concat", "gate")
PREFIX = "item_encoder.id_fusion."  # the target-only parameters' names


class IdFusion(nn.Module):
    def __init__(self, num_items: int, d: int, how: str = "sum", known: torch.Tensor | None = None,
                 id_dropout: float = 0.0, init_std: float = 0.0):
        super().__init__()
        if how not in FUSIONS:
            raise ValueError(f"item_fusion={how!r}: expected one of {', '.join(FUSIONS)}")
        self.how, self.id_dropout = how, id_dropout
        self.embedding = nn.Embedding(num_items + 1, d, padding_idx=0)
        init_weight(self.embedding.weight, init_std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()
        if how == "concat":
            self.mix = nn.Linear(2 * d, d)
            with torch.no_grad():  # [I, I] and no bias: c + e at init
                self.mix.weight.copy_(torch.cat([torch.eye(d), torch.eye(d)], dim=1))
                self.mix.bias.zero_()
        elif how == "gate":
            self.mix = nn.Linear(2 * d, d)
            nn.init.zeros_(self.mix.weight)  # g = sigmoid(0) = 1/2 for every item at init
            nn.init.zeros_(self.mix.bias)
        # which items have a trained ID (rebuilt from the data, never saved): every item until set_known
        self.register_buffer("known", torch.ones(num_items + 1, dtype=torch.bool), persistent=False)
        if known is not None:
            self.set_known(known)

    def set_known(self, known: torch.Tensor) -> None:
        """known: (num_items+1,) bool, True for the items that occur in training (row 0, padding, is ignored)."""
        if known.shape != self.known.shape:
            raise ValueError(f"known items: {tuple(known.shape)} rows for an ID table of {tuple(self.known.shape)}")
        self.known.copy_(known.to(torch.bool))

    def start_from_content(self) -> None:
        """Zero the ID table, so that under sum and concat (c + 0) the fused model computes its content model's
        scores exactly: the start of a run that adds IDs to a trained content model (warm_start), whose IDs then
        learn only what the content misses. Every row still gets its own gradient (that of its fused vector)."""
        if self.how == "gate":
            raise ValueError("item_fusion=gate halves the content vector at init (g = 1/2): it cannot start from "
                             "the content model's scores; use sum or concat")
        with torch.no_grad():
            self.embedding.weight.zero_()

    def fuse(self, content: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
        if self.how == "sum":
            return content + ids
        both = torch.cat([content, ids], dim=-1)
        if self.how == "concat":
            return self.mix(both)
        gate = torch.sigmoid(self.mix(both))
        return gate * content + (1.0 - gate) * ids

    def forward(self, content: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """content (n, d) of `items` (n,) -> (n, d); cold items (and dropped ones) keep their content vector."""
        use_id = self.known[items]
        if self.training and self.id_dropout > 0:
            use_id = use_id & (torch.rand(items.shape, device=items.device) >= self.id_dropout)
        fused = self.fuse(content, self.embedding(items).to(content.dtype))
        return torch.where(use_id.unsqueeze(-1), fused, content)
