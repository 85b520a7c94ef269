"""Step cost against catalogue size (not a test): `python bench/catalogue_scaling.py [--items 4385,20000,80000]`.

The side-network row of the real-data studies (MiniLM width 384, its layer states at layers 2, 4, 6 cached; a
side network of width r = 128, the linear head to d = 64, a 2-block SASRec user encoder; batch 256 windows of 20
items, bf16 autocast, AdamW) trained with two losses side by side in one invocation, at each catalogue size:
  exact    the softmax over the whole catalogue: every step runs every item through the side network and head;
  sampled  the sampled softmax over the batch's items + 1,024 shared uniform negatives (logQ-corrected): a step
           touches the batch's items only, whatever the catalogue holds.
The cached states are random (the cost of a step does not depend on their values); items are drawn by a Zipf-like
popularity so that a batch holds a realistic number of distinct items. Reported: seconds per 1,000 training
windows (median of --steps timed steps after --warmup), and each loss's time at the largest catalogue over its
time at the smallest. Run it on an otherwise idle machine.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import BertConfig, BertModel

from adapter4rec.adapters.side import SideNetwork
from adapter4rec.models.item_encoders import ContentItemEncoder
from adapter4rec.models.losses import Scorer
from adapter4rec.models.recommender import Recommender
from adapter4rec.models.user_encoder import SASRecEncoder

RESULTS = Path(__file__).resolve().parent / "results"
HIDDEN, LAYERS, R, D, L, BATCH = 384, [2, 4, 6], 128, 64, 20, 256


class CachedStatesEncoder(ContentItemEncoder):
    """A content item tower whose side network reads a filled state table (the backbone never runs)."""

    def __init__(self, num_items: int):
        backbone = BertModel(BertConfig(hidden_size=HIDDEN, num_hidden_layers=1, num_attention_heads=6,
                                        intermediate_size=64, vocab_size=8))
        super().__init__(backbone, D)
        self.count = num_items
        self.side = SideNetwork(HIDDEN, LAYERS, R)
        self.side.table = torch.randn(num_items + 1, len(LAYERS), HIDDEN).to(torch.bfloat16)
        for p in self.backbone.parameters():
            p.requires_grad_(False)

    @property
    def num_items(self) -> int:
        return self.count


def windows(num_items: int, steps: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Batches of (BATCH, L+1) windows over a Zipf(1)-like popularity (item i drawn ~ 1 / i)."""
    weights = 1.0 / torch.arange(1, num_items + 1, dtype=torch.float64)
    return [torch.multinomial(weights, BATCH * (L + 1), replacement=True, generator=generator).view(BATCH, L + 1) + 1
            for _ in range(steps)]


def time_loss(num_items: int, negatives: int, steps: int, warmup: int) -> float:
    torch.manual_seed(0)
    counts = torch.ones(num_items + 1)
    model = Recommender(CachedStatesEncoder(num_items), SASRecEncoder(D, L, 2, 2, 0.3), loss="softmax",
                        window_counts=counts, scorer=Scorer("dot"), softmax_negatives=negatives)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    seconds = []
    for step, seqs in enumerate(windows(num_items, warmup + steps, generator)):
        start = time.perf_counter()
        negs = model.draw_negatives(seqs, generator)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            loss = model(seqs, negs)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if step >= warmup:
            seconds.append(time.perf_counter() - start)
    return statistics.median(seconds) * 1000 / BATCH


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--items", default="4385,20000,35000,80000")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--negatives", type=int, default=1024)
    args = parser.parse_args()
    sizes = [int(n) for n in args.items.split(",")]
    rows = {}
    for n in sizes:
        rows[n] = {"exact": time_loss(n, 0, args.steps, args.warmup),
                   "sampled": time_loss(n, args.negatives, args.steps, args.warmup)}
        print(f"{n:>7} items: exact softmax {rows[n]['exact']:.3f} s / 1,000 windows, sampled softmax "
              f"({args.negatives} shared negatives) {rows[n]['sampled']:.3f} s", flush=True)
    first, last = sizes[0], sizes[-1]
    for loss in ("exact", "sampled"):
        print(f"{loss}: {rows[last][loss] / rows[first][loss]:.2f}x the time per window at {last} items as at {first}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "catalogue_scaling.json").write_text(json.dumps({"threads": torch.get_num_threads(), **{
        str(n): v for n, v in rows.items()}}, indent=1))


if __name__ == "__main__":
    main()
