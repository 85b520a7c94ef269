"""Negatives for the losses that sample them: the model decides which (Recommender.draw_negatives), this draws them.

bce: one uniform negative per target slot that is not in the user's window (the paper's sampler, vectorised);
a sampled softmax (`softmax_negatives` S > 0): S uniform items shared by the batch (models/losses.py corrects
for how they were drawn). The in-batch and full-catalogue softmaxes draw nothing.

Candidate groups (`training_groups`): which items a training loss may compare a target with. A pool's user
competes with its own domain's items only (unless mixed negatives are chosen), and an item held out as cold is
no candidate of any loss: otherwise every step would push exactly the items the cold-start study calls "never
trained" down (their ID rows and content vectors would receive gradients).
"""
from __future__ import annotations

import torch


def training_groups(num_items: int, domains=None, cold: torch.Tensor | None = None,
                    mixed: bool = False) -> torch.Tensor | None:
    """(num_items+1,) long group of each item (0 = never a training candidate: padding, cold items; a pool's domain
    d is group d + 1, or 1 for every domain with `mixed`); None when every item competes with every other."""
    if (domains is None or mixed) and cold is None:
        return None
    groups = torch.ones(num_items + 1, dtype=torch.long)
    if domains is not None and not mixed:
        groups = domains.of_items(torch.arange(num_items + 1)) + 1
    if cold is not None:
        groups[cold] = 0
    groups[0] = 0
    return groups


def sample_negatives(seqs: torch.Tensor, num_items: int, generator: torch.Generator,
                     groups: torch.Tensor | None = None, max_rounds: int = 20) -> torch.Tensor:
    """One uniform negative per target slot, not in the user's sequence; 0 where the target is padding.

    seqs: (B, L+1) training windows; returns (B, L). groups (training_groups): each negative is drawn uniformly
    from its target's group. Collisions are re-drawn in vectorised rounds; after `max_rounds` (only possible when
    a user has seen nearly every item of the group) leftovers stay as they are."""
    targets = seqs[:, 1:]
    if groups is None:  # every item (the paper's sampler; its random stream as it always was)
        neg = torch.randint(1, num_items + 1, targets.shape, generator=generator)
        draw = lambda where: torch.randint(1, num_items + 1, (int(where.sum()),), generator=generator)  # noqa: E731
    else:
        draw = _uniform_in_group(targets, groups, generator)
        neg = torch.zeros_like(targets)
        neg[targets > 0] = draw(targets > 0)
    for _ in range(max_rounds):
        clash = (neg.unsqueeze(-1) == seqs.unsqueeze(1)).any(-1) & (targets > 0)  # (B, L)
        if int(clash.sum()) == 0:
            break
        neg[clash] = draw(clash)
    return neg.masked_fill(targets == 0, 0)


def _uniform_in_group(targets: torch.Tensor, groups: torch.Tensor, generator: torch.Generator):
    """draw(where) -> one item per True slot of `where`, uniform over the group of that slot's target."""
    order = torch.argsort(groups, stable=True)  # items sorted by group: group g is order[start[g]:start[g+1]]
    sizes = torch.bincount(groups, minlength=int(groups.max()) + 1)
    start = torch.cumsum(sizes, 0) - sizes

    def draw(where: torch.Tensor) -> torch.Tensor:
        group = groups[targets[where]]
        pick = (torch.rand(len(group), generator=generator) * sizes[group]).long().clamp(max=sizes[group] - 1)
        return order[start[group] + pick]
    return draw
