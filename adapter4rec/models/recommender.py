"""The TransRec model: item tower -> item embeddings -> SASRec user encoder -> dot-product scores.

Each step encodes every DISTINCT real item of the batch once (padding excluded) and gathers the
embeddings back into their slots; the original encoded all B x (L+1) x 2 slots, 79% of them padding.

Objectives (reference §2.3; they share the network and differ only in where the loss is taken):
  sasrec: predict item t+1 from the prefix at every real position;   cpc: at the last position only.
Losses:
  bce:     binary cross-entropy on the positive and one sampled negative per position (the paper);
  inbatch: softmax over the batch's distinct items, logits corrected by -log(popularity) and the user's
           own other items masked out (IDvs.MoRec's debiased in-batch loss).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adapter4rec.models.item_encoders import encode_catalogue
from adapter4rec.models.user_encoder import SASRecEncoder


class Recommender(nn.Module):
    def __init__(self, item_encoder: nn.Module, user_encoder: SASRecEncoder, arch: str = "sasrec",
                 loss: str = "bce", item_counts: torch.Tensor | None = None):
        super().__init__()
        self.item_encoder, self.user_encoder = item_encoder, user_encoder
        self.arch, self.loss_name = arch, loss
        counts = item_counts if item_counts is not None else torch.ones(item_encoder.num_items + 1)
        # log of smoothed training popularity, for the in-batch logQ correction (not saved: data-derived)
        self.register_buffer("log_popularity", torch.log(counts.float() + 1.0), persistent=False)

    @property
    def num_items(self) -> int:
        return self.item_encoder.num_items

    def encode_distinct(self, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Encode the distinct items of `ids` (any shape, 0 = padding) once.

        Returns (table, inverse, distinct): table (n+1, d) with row 0 the zero padding embedding,
        `table[inverse]` the embedding of every slot of `ids`, distinct (n,) the real item ids."""
        distinct, inverse = torch.unique(ids, return_inverse=True)  # sorted, so item 0 comes first if present
        has_pad = bool(distinct[0] == 0)
        real = distinct[1:] if has_pad else distinct
        emb = self.item_encoder(real)
        table = torch.cat([emb.new_zeros(1, emb.shape[1]), emb])
        return table, (inverse if has_pad else inverse + 1), real

    def forward(self, seqs: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        """seqs: (B, L+1) left-padded training windows; negatives: (B, L) for the bce loss. Returns the loss."""
        inputs, targets = seqs[:, :-1], seqs[:, 1:]
        mask = (inputs > 0) & (targets > 0)  # (B, L) positions that carry a loss
        if self.arch == "cpc":
            mask = mask & (torch.arange(mask.shape[1], device=mask.device) == mask.shape[1] - 1)
        if self.loss_name == "bce":
            table, inverse, _ = self.encode_distinct(torch.cat([seqs, negatives], dim=1))
            slots = table[inverse]  # (B, 2L+1, d)
            states = self.user_encoder(slots[:, :inputs.shape[1]], inputs > 0)  # (B, L, d)
            pos = (states * slots[:, 1:seqs.shape[1]]).sum(-1)[mask]
            neg = (states * slots[:, seqs.shape[1]:]).sum(-1)[mask]
            return (F.binary_cross_entropy_with_logits(pos.float(), torch.ones_like(pos, dtype=torch.float))
                    + F.binary_cross_entropy_with_logits(neg.float(), torch.zeros_like(neg, dtype=torch.float)))
        table, inverse, distinct = self.encode_distinct(seqs)
        states = self.user_encoder(table[inverse[:, :-1]], inputs > 0)
        return self._inbatch_loss(states, seqs, mask, table[1:], inverse, distinct)

    def _inbatch_loss(self, states, seqs, mask, candidates, inverse, distinct) -> torch.Tensor:
        """Softmax over the batch's distinct items at each loss position (see module docstring)."""
        logits = states[mask].float() @ candidates.float().T - self.log_popularity[distinct]  # (P, n)
        label = inverse[:, 1:][mask] - 1  # column of the target among the distinct items
        rows = torch.arange(seqs.shape[0], device=seqs.device).unsqueeze(1).expand_as(mask)[mask]
        own = torch.zeros(seqs.shape[0], len(distinct) + 1, dtype=torch.bool, device=seqs.device)
        own.scatter_(1, inverse, True)  # (B, n+1): items in each user's window
        others = own[rows, 1:]
        others[torch.arange(len(label), device=label.device), label] = False  # never mask the target itself
        return F.cross_entropy(logits.masked_fill(others, torch.finfo(logits.dtype).min), label)

    def user_states(self, history: torch.Tensor) -> torch.Tensor:
        """history: (B, L) left-padded item ids -> (B, d) user state after the newest item."""
        table, inverse, _ = self.encode_distinct(history)
        return self.user_encoder(table[inverse], history > 0)[:, -1]

    @torch.no_grad()
    def item_table(self, chunk: int = 512) -> torch.Tensor:
        """(num_items+1, d) embeddings of every item (row 0 = padding = zeros), encoded in chunks."""
        return encode_catalogue(self.item_encoder, self.num_items, next(self.parameters()).device, chunk)

    def user_states_from_table(self, history: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """Like user_states, but gathering item embeddings from a precomputed item table (evaluation)."""
        return self.user_encoder(table[history].to(table.dtype), history > 0)[:, -1]
