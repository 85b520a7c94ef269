"""Counting, for full-ranking evaluation, how many items score above each user's target.

tiles.py is the exact kernel (cache-sized GEMM tiles, one worker per thread); early_exit.py stops counting a
user as soon as its target has fallen out of every reported top-K, which leaves every metric unchanged.
"""
from adapter4rec.ranking.early_exit import count_until
from adapter4rec.ranking.tiles import count_above, run_workers

__all__ = ["count_above", "count_until", "run_workers"]
