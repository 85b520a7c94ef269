"""Each rank's training batches under DDP: every window of the epoch exactly once, every rank the same steps.

torch's DistributedSampler pads the epoch by repeating up to W-1 windows so that every rank gets the same
count, and then the DataLoader's last batch may still differ in size between ranks. Here one seeded
permutation per epoch (the same on every rank: it depends only on seed and epoch) is cut into global batches of
W x batch_size windows; each global batch is split into W near-equal parts (sizes differ by at most one), one
per rank. A last global batch with fewer windows than ranks is merged into the one before it, so no rank ever
gets an empty batch and every rank takes the same number of steps (DDP's all-reduce needs every rank at every
step). Every loss divides its summed per-position losses by the global position count over W
(models/losses.rank_denominator), so every loss position of the global batch weighs the same, whatever the
part sizes.
"""
from __future__ import annotations

import torch
from torch.utils.data import Sampler


class ShardedBatches(Sampler):
    """Batch sampler of rank `rank` of `world` over `n` windows; call `set_epoch` before each epoch."""

    def __init__(self, n: int, batch_size: int, rank: int, world: int, seed: int,
                 weights: torch.Tensor | None = None):
        if n < world:
            raise ValueError(f"{n} training window(s) cannot be shared by {world} processes: use fewer processes")
        self.n, self.batch_size, self.rank, self.world, self.seed = n, batch_size, rank, world, seed
        self.weights = weights  # (n,) a pool's smoothed domain mix (domain_weights): windows drawn with replacement
        self.epoch = 0
        per_step = batch_size * world
        steps = -(-n // per_step)
        if steps > 1 and n - (steps - 1) * per_step < world:
            steps -= 1  # the remainder (fewer windows than ranks) joins the previous global batch
        self.steps, self.per_step = steps, per_step

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.steps

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(self.n, generator=generator) if self.weights is None else \
            torch.multinomial(self.weights, self.n, replacement=True, generator=generator)
        for step in range(self.steps):
            end = self.n if step == self.steps - 1 else (step + 1) * self.per_step
            yield torch.tensor_split(order[step * self.per_step:end], self.world)[self.rank].tolist()
