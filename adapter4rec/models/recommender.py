"""The TransRec model: item tower -> item embeddings -> SASRec user encoder -> scores (dot or cosine / tau).

Each step encodes every DISTINCT real item of the batch once (padding excluded) and gathers the
embeddings back into their slots; the original encoded all B x (L+1) x 2 slots, 79% of them padding.

Objectives (reference §2.3; they share the network and differ only in where the loss is taken):
  sasrec: predict item t+1 from the prefix at every real position;   cpc: at the last position only.
Losses (models/losses.py: bce, inbatch, softmax over the catalogue or a sampled set, and their corrections).
"""
from __future__ import annotations

import torch
from torch import nn

from adapter4rec.models.item_encoders import encode_catalogue
from adapter4rec.models.losses import (Scorer, bce_loss, candidate_softmax, correction, global_candidates,
                                       own_items_mask, rank_denominator)
from adapter4rec.models.negatives import sample_negatives
from adapter4rec.models.user_encoder import SASRecEncoder


class Recommender(nn.Module):
    def __init__(self, item_encoder: nn.Module, user_encoder: SASRecEncoder, arch: str = "sasrec",
                 loss: str = "bce", window_counts: torch.Tensor | None = None, scorer: Scorer | None = None,
                 inbatch_correction: str = "multiplicity", softmax_negatives: int = 0, gather_negatives: bool = True,
                 candidate_groups: torch.Tensor | None = None):
        super().__init__()
        self.item_encoder, self.user_encoder = item_encoder, user_encoder
        self.scorer = scorer if scorer is not None else Scorer("dot")
        self.arch, self.loss_name = arch, loss
        self.inbatch_correction, self.softmax_negatives = inbatch_correction, softmax_negatives
        self.gather_negatives = gather_negatives
        counts = window_counts if window_counts is not None else torch.ones(item_encoder.num_items + 1)
        # log of the smoothed popularity p_j (sums to 1 over items 1..N) for the sampling corrections: each item's
        # share of the training windows' slots (LeaveOneOut.window_counts), which is what the batches' candidates
        # are drawn from (not saved: data-derived)
        smoothed = counts.float() + 1.0
        self.register_buffer("log_popularity", torch.log(smoothed / smoothed[1:].sum()), persistent=False)
        # (num_items+1,) which items a training loss may compare a target with (models/negatives.py,
        # training_groups): the target's own group only; group 0 (padding, items held out as cold) never. None:
        # every item (one dataset without held-out items)
        self.register_buffer("candidate_groups", candidate_groups, persistent=False)

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

    def uses_shared_negatives(self) -> bool:
        return self.loss_name == "softmax" and self.softmax_negatives > 0

    def draw_negatives(self, seqs: torch.Tensor, generator: torch.Generator) -> torch.Tensor | None:
        """What `forward` takes as `negatives` for these windows (B, L+1), drawn from `generator` on the CPU:
        bce, one per position (B, L); a sampled softmax, S shared uniform items (S,); otherwise None."""
        if self.loss_name == "bce":
            groups = None if self.candidate_groups is None else self.candidate_groups.cpu()
            negatives = sample_negatives(seqs, self.num_items, generator, groups)
        elif self.uses_shared_negatives():
            negatives = torch.randint(1, self.num_items + 1, (self.softmax_negatives,), generator=generator)
        else:
            return None
        return negatives.to(next(self.parameters()).device)

    def after_step(self) -> None:
        """Call after every optimizer step that was taken: keeps a learned temperature under its cap."""
        self.scorer.clamp_()

    def forward(self, seqs: torch.Tensor, negatives: torch.Tensor | None = None) -> torch.Tensor:
        """seqs: (B, L+1) left-padded training windows; negatives: (B, L) for bce, (S,) shared negatives for a
        sampled softmax, else None. Returns the loss: the mean over the loss positions in one process; under DDP
        this rank's share of the global batch's mean (losses.rank_denominator)."""
        inputs, targets = seqs[:, :-1], seqs[:, 1:]
        mask = (inputs > 0) & (targets > 0)  # (B, L) positions that carry a loss
        if self.arch == "cpc":
            mask = mask & (torch.arange(mask.shape[1], device=mask.device) == mask.shape[1] - 1)
        denominator = rank_denominator(mask.sum())  # None in one process
        if self.loss_name == "bce":
            table, inverse, _ = self.encode_distinct(torch.cat([seqs, negatives], dim=1))
            slots = table[inverse]  # (B, 2L+1, d)
            states = self.user_encoder(slots[:, :inputs.shape[1]], inputs > 0)  # (B, L, d)
            return bce_loss(self.scorer, states, slots[:, 1:seqs.shape[1]], slots[:, seqs.shape[1]:], mask,
                            denominator)
        if self.loss_name == "softmax" and not self.softmax_negatives:
            return self._catalogue_softmax(seqs, mask, denominator)
        return self._sampled_softmax(seqs, negatives if self.uses_shared_negatives() else None, mask, denominator)

    def _catalogue_softmax(self, seqs: torch.Tensor, mask: torch.Tensor,
                           denominator: torch.Tensor | None) -> torch.Tensor:
        """Cross-entropy over every item (exact: no sampling, no correction)."""
        table = self.item_encoder(torch.arange(1, self.num_items + 1, device=seqs.device))  # (N, d)
        table = torch.cat([table.new_zeros(1, table.shape[1]), table])
        states = self.user_encoder(table[seqs[:, :-1]], seqs[:, :-1] > 0)
        rows = torch.arange(seqs.shape[0], device=seqs.device).unsqueeze(1).expand_as(mask)[mask]
        label = seqs[:, 1:][mask] - 1
        logits = self.scorer.pairwise(states[mask], table[1:])  # (P, N)
        masked = own_items_mask(seqs, seqs - 1, rows, label, self.num_items)
        candidates = torch.arange(1, self.num_items + 1, device=seqs.device)
        return candidate_softmax(logits, label, self._outside_group(masked, label + 1, candidates), denominator)

    def _outside_group(self, masked: torch.Tensor, label_items: torch.Tensor, candidates: torch.Tensor):
        """`masked` (P, n) with every candidate outside the group of its row's target added (another domain of a
        pool, or an item held out as cold): such an item is no candidate of that row, and so gets no gradient.
        label_items (P,), candidates (n,): item ids."""
        if self.candidate_groups is None:
            return masked
        return masked | (self.candidate_groups[candidates].unsqueeze(0)
                         != self.candidate_groups[label_items].unsqueeze(1))

    def _sampled_softmax(self, seqs: torch.Tensor, shared: torch.Tensor | None, mask: torch.Tensor,
                         denominator: torch.Tensor | None) -> torch.Tensor:
        """Softmax over the batch's distinct items (+ shared uniform negatives), corrected for how they were drawn."""
        flat = seqs.reshape(-1) if shared is None else torch.cat([seqs.reshape(-1), shared])
        table, inverse, distinct = self.encode_distinct(flat)
        column = inverse[:seqs.numel()].view_as(seqs) - 1  # (B, L+1) candidate column of each slot, -1 = padding
        states = self.user_encoder(table[column[:, :-1] + 1], seqs[:, :-1] > 0)
        rows = torch.arange(seqs.shape[0], device=seqs.device).unsqueeze(1).expand_as(mask)[mask]
        counts = torch.bincount(inverse, minlength=len(distinct) + 1)[1:]  # slots per candidate (shared included)
        slots, draws = int((seqs > 0).sum()), 0 if shared is None else len(shared)
        cand, emb = distinct, table[1:]
        if self.gather_negatives:  # the global batch's candidates under DDP (identity in one process)
            cand, emb, counts, to_global, slots, draws = global_candidates(distinct, emb, counts, slots, draws)
            if to_global is not None:
                column = torch.where(column >= 0, to_global[column.clamp(min=0)], column)
        label = column[:, 1:][mask]
        logits = self.scorer.pairwise(states[mask], emb) + correction(
            self.inbatch_correction, self.log_popularity[cand], counts, slots, draws, self.num_items)
        masked = self._outside_group(own_items_mask(seqs, column, rows, label, len(cand)), seqs[:, 1:][mask], cand)
        return candidate_softmax(logits, label, masked, denominator)

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

    def user_vectors(self, history: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
        """(B, d) what ranking compares with `ranking_table(table)`: a dot product of the two is the score's
        order (cosine: the directions; the temperature scales every score alike and is left out)."""
        return self.scorer.normalize(self.user_states_from_table(history, table))

    def ranking_table(self, table: torch.Tensor) -> torch.Tensor:
        return self.scorer.normalize(table)
