"""Stop counting a user once its target is out of every top-K: the metrics are the same, the work is not.

HR@K, NDCG@K and MRR@K of a target with g items above it are 0 for every K <= g, whatever the ties
(evaluate.metrics_from_counts), so once g >= max K nothing more needs counting for that user. count_until
counts the item rows in rounds of growing spans: the first few tiles for every user, then 8x as many rows
for the users whose count is still below max K, and so on. A user who stays (its target is in the top K, or
near it) is counted over every row, in the same item tiles as in one pass and with its target's score from the
same product as its competitors' in each, so its counts are the exact counts; a user who leaves has a count
>= max K, and its metrics are exactly 0 either way.

How much it saves depends on the model, not on the catalogue alone: a random ranking loses nearly every user
after the first round (the scale point of bench/benchmark.py), a model whose every target is at the top keeps
all of them (about one full pass, the same as before; that case is benchmarked too).
"""
from __future__ import annotations

import torch

from adapter4rec.ranking import tiles

FIRST_TILES, GROWTH = 8, 8  # the first round's span in tiles, and how much each round's span grows


def count_until(u: torch.Tensor, table: torch.Tensor, target: torch.Tensor, seen: tuple, item_chunk: int,
                stop_at: int, **kernel) -> tuple[torch.Tensor, torch.Tensor]:
    """count_above over the whole table, except that users whose count of items above reaches `stop_at` are not
    counted further (their returned count is >= stop_at, not exact; every other count is exact). kernel: the
    group / tile / threads options of count_above."""
    n = table.shape[0]
    b = len(target)
    greater = torch.zeros(b, dtype=torch.float64, device=u.device)
    ties = torch.zeros_like(greater)
    which, items = (t.to(u.device) for t in seen)
    width = kernel.get("tile") or (tiles.TILE if u.device.type == "cpu" else item_chunk)
    width = max(1, min(width, item_chunk)) * FIRST_TILES  # rounds end on tile boundaries: the same tiles
    active = torch.arange(b, device=u.device)
    lo = 0
    while lo < n and len(active):
        hi = min(n, lo + width)
        position = torch.full((b,), -1, dtype=torch.long, device=u.device)
        position[active] = torch.arange(len(active), device=u.device)
        keep = position[which] >= 0  # the history pairs of the users still counted, renumbered
        above, level = tiles.count_above(u[active], table, target[active], (position[which[keep]], items[keep]),
                                         item_chunk, span=(lo, hi), **kernel)
        greater[active] += above
        ties[active] += level
        active = active[greater[active] < stop_at]
        lo, width = hi, width * GROWTH
    return greater, ties
