"""Negatives for the losses that sample them: the model decides which (Recommender.draw_negatives), this draws them.

bce: one uniform negative per target slot that is not in the user's window (the paper's sampler, vectorised);
a sampled softmax (`softmax_negatives` S > 0): S uniform items shared by the batch (models/losses.py corrects
for how they were drawn). The in-batch and full-catalogue softmaxes draw nothing.
"""
from __future__ import annotations

import torch


def sample_negatives(seqs: torch.Tensor, num_items: int, generator: torch.Generator,
                     max_rounds: int = 20) -> torch.Tensor:
    """One uniform negative per target slot, not in the user's sequence; 0 where the target is padding.

    seqs: (B, L+1) training windows; returns (B, L). Collisions are re-drawn in vectorised rounds; after
    `max_rounds` (only possible when a user has seen nearly every item) leftovers stay as they are."""
    targets = seqs[:, 1:]
    neg = torch.randint(1, num_items + 1, targets.shape, generator=generator)
    for _ in range(max_rounds):
        clash = (neg.unsqueeze(-1) == seqs.unsqueeze(1)).any(-1) & (targets > 0)  # (B, L)
        n = int(clash.sum())
        if n == 0:
            break
        neg[clash] = torch.randint(1, num_items + 1, (n,), generator=generator)
    return neg.masked_fill(targets == 0, 0)
