"""Full-ranking evaluation: HR@K, NDCG@K and MRR@K over the candidate items, leave-one-out, history masked.

`rank_metrics` is a pure function (tested against hand-computed values). Ties are resolved by their
expectation under a random order: a target tied with t other items, below g items, has a rank uniform in
g..g+t — so a constant scorer gets chance-level metrics, not a perfect score.

`evaluate` computes the item table once, scores users in chunks by one matrix product, masks each
user's history with a scatter, and shards users across ranks (each user counted exactly once; sums are
all-reduced). Protocol of every number: leave-one-out, full ranking over the candidate items (eval_candidates: every
item of the items file, or only the items that occur in the kept users' sequences, as the original and
RecBole rank), the user's whole history masked, users whose target is already in their history skipped and
counted (eval_repeats=skip) or no masking at all (eval_repeats=no_mask).

Ties must be ties: a target's score is read from the SAME matrix product as its competitors' (its row is
appended to every item tile), because an elementwise product-and-sum rounds differently from a GEMM and
would turn exact ties (duplicated items, a collapsed model) into arbitrary wins and losses.

`evaluate_embeddings` (dot-product scorers, the training loop's path) never holds more than a small score tile:
on a CPU, 128 users x (1,024 items + their 128 targets), small enough to stay in cache from the product to the
counts, with whole tiles handed to one worker per torch thread (adapter4rec/ranking/; bench/benchmark.py's
scale point). A user stops being counted once its target is below max K items (its metrics are 0 from there
on). The counts are exact: the same per-user numbers of items above / level with the target whatever the
tile, group, chunk or thread count (tests/test_metrics.py compares them with a float64 reference).

Non-finite scores: a user whose target score is NaN or +-inf (a diverged or overflowing model) ranks last, all
its metrics 0, and is counted (`nonfinite_users`). A non-finite competitor ranks ABOVE every target: an item
table with NaN rows (an overflowing head) can only lower the metrics, never raise them by leaving the ranking;
such rows among the candidates are counted once per table (`nonfinite_items`).
A split without users gives NaN metrics, never 0.0 (_average_over_users).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
from typing import Callable

import torch

from adapter4rec import dist
from adapter4rec.data.split import EvalSplit, gather_csr
from adapter4rec.progress import progress_bar
from adapter4rec.ranking import count_until


METRICS = ("hr", "ndcg", "mrr")
# ranking by dot products (evaluate_embeddings): users counted per pass over the item table (the tiles of one
# pass: adapter4rec/ranking/)
_BLOCK_USERS = 4096


def rank_metrics(scores: torch.Tensor, target: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """Per-user HR@K, NDCG@K and MRR@K (and `nonfinite`, see metrics_of_targets). scores: (B, N) with excluded
    items at -inf; target: (B,) column index."""
    scores = scores.float()
    target_score = scores.gather(1, target.unsqueeze(1))  # (B, 1)
    # a NaN competitor ranks above the target (excluded items are -inf, never NaN); a NaN target makes the user
    # non-finite, whatever its counts
    greater = ((scores > target_score) | scores.isnan()).sum(1).double()  # g
    ties = (scores == target_score).sum(1).double() - 1.0  # t (the target itself excluded)
    return metrics_of_targets(greater, ties, torch.isfinite(target_score.squeeze(1)), ks)


def metrics_of_targets(greater: torch.Tensor, ties: torch.Tensor, finite: torch.Tensor,
                       ks: list[int]) -> dict[str, torch.Tensor]:
    """metrics_from_counts, except that a user whose target score is not finite (`finite` False) ranks LAST: every
    metric exactly 0. Its counts mean nothing: a NaN target is neither below nor level with anything, so it would
    count g = t = 0, a perfect rank (and an overflowed model would look like the best epoch). Also the per-user
    0/1 `nonfinite`, which _average_over_users sums into `nonfinite_users`."""
    nonfinite = ~finite.to(greater.device)
    out = metrics_from_counts(greater.masked_fill(nonfinite, math.inf), ties.masked_fill(nonfinite, 0.0), ks)
    out["nonfinite"] = nonfinite.double()
    return out


def metrics_from_counts(greater: torch.Tensor, ties: torch.Tensor, ks: list[int]) -> dict[str, torch.Tensor]:
    """HR@K, NDCG@K and MRR@K of targets with `greater` items above and `ties` other items level.

    The target's rank is uniform over greater+1 .. greater+ties+1, so each metric is the mean of its value over
    those ranks: with cumulative sums D[r] = sum_{j<r} 1/log2(j+2) and R[r] = sum_{j<r} 1/(j+1), that mean is
    (D[hi] - D[lo]) / (ties+1) with lo = min(greater, K), hi = min(greater+ties+1, K) (likewise R)."""
    greater, ties = greater.double(), ties.double()
    kmax = max(ks)
    positions = torch.arange(kmax, device=greater.device).double()
    discount = torch.zeros(kmax + 1, dtype=torch.float64, device=greater.device)
    discount[1:] = torch.cumsum(1.0 / torch.log2(positions + 2.0), 0)
    reciprocal = torch.zeros_like(discount)
    reciprocal[1:] = torch.cumsum(1.0 / (positions + 1.0), 0)
    out = {}
    for k in ks:
        out[f"hr@{k}"] = ((k - greater) / (ties + 1.0)).clamp(0.0, 1.0)
        lo = greater.clamp(max=k).long()
        hi = (greater + ties + 1.0).clamp(max=k).long()
        out[f"ndcg@{k}"] = (discount[hi] - discount[lo]) / (ties + 1.0)
        out[f"mrr@{k}"] = (reciprocal[hi] - reciprocal[lo]) / (ties + 1.0)
    return out


def _average_over_users(split: EvalSplit, ks: list[int], batch_size: int,
                        per_chunk: Callable[[torch.Tensor], dict[str, torch.Tensor]], progress: bool, desc: str,
                        batches_per_call: int = 1) -> dict:
    """Mean of per-user metrics over the split; users are sharded across ranks (each counted once), sums reduced.

    per_chunk gets up to `batches_per_call` batches of users at once; the sums are still taken batch by batch,
    so the result does not depend on it."""
    mine = torch.arange(dist.rank(), len(split), dist.world_size())
    names = [f"{m}@{k}" for m in METRICS for k in ks] + ["nonfinite"]  # summed alike: per-user values
    sums = torch.zeros(len(names) + 1, dtype=torch.float64)
    bar = progress_bar(len(range(0, len(mine), batch_size)), desc, progress, quiet=True)
    for block in range(0, len(mine), batch_size * batches_per_call):
        per_user = per_chunk(mine[block:block + batch_size * batches_per_call])
        for start in range(block, min(block + batch_size * batches_per_call, len(mine)), batch_size):
            rows = mine[start:start + batch_size]
            at = slice(start - block, start - block + len(rows))
            sums[:-1] += torch.stack([per_user[n][at].sum().cpu() for n in names])
            sums[-1] += len(rows)
            bar.update(1)
    bar.close()
    dist.all_reduce_sum(sums)
    users = int(sums[-1])
    # no users: NaN, never a 0.0 that reads like a measured (terrible) model
    result = {n: float(sums[i] / users) if users else math.nan for i, n in enumerate(names[:-1])}
    result.update(users=users, repeats_skipped=split.repeats_skipped, nonfinite_users=int(sums[-2]))
    return result


@torch.no_grad()
def evaluate(score_fn: Callable[[torch.Tensor], torch.Tensor], split: EvalSplit, ks: list[int],
             batch_size: int, device: torch.device, progress: bool = False, desc: str = "eval") -> dict:
    """Average metrics over this split's users, sharded across ranks.

    score_fn(history (b, L) on device) -> (b, num_items+1) scores; column 0 (padding) is always excluded."""
    excluded = None if split.candidates is None else ~split.candidates.to(device)
    nan_columns = None  # (N+1,) items whose score was NaN for a user with a finite target score: `nonfinite_items`

    def per_chunk(rows: torch.Tensor) -> dict[str, torch.Tensor]:
        nonlocal nan_columns
        scores = score_fn(split.history[rows].to(device)).float()
        target_finite = scores.gather(1, split.target[rows].to(device).unsqueeze(1)).isfinite()
        nan = (scores.isnan() & target_finite).any(0)
        nan_columns = nan if nan_columns is None else nan_columns | nan
        scores[:, 0] = -math.inf
        if excluded is not None:
            scores[:, excluded] = -math.inf
        which, seen = gather_csr(split.seen_ptr, split.seen_items, rows)
        scores[which.to(device), seen.to(device)] = -math.inf
        return rank_metrics(scores, split.target[rows].to(device), ks)
    result = _average_over_users(split, ks, batch_size, per_chunk, progress, desc)
    if nan_columns is None:  # a rank without users: the catalogue's width, all clean
        nan_columns = score_fn(split.history[:0].to(device)).isnan().any(0)
    nan = nan_columns[1:].double().cpu()
    if excluded is not None:
        nan = nan * split.candidates[1:].double()
    dist.all_reduce_sum(nan)  # every rank scores every item: a column counts once if NaN for any rank's users
    result["nonfinite_items"] = int((nan > 0).sum())
    return result


@torch.no_grad()
def evaluate_embeddings(users: Callable[[torch.Tensor], torch.Tensor], table: torch.Tensor, split: EvalSplit,
                        ks: list[int], batch_size: int, device: torch.device, item_chunk: int = 65536,
                        progress: bool = False, desc: str = "eval") -> dict:
    """Like `evaluate` for dot-product scorers, with memory bounded in users AND items.

    users(history (b, L)) -> (b, d) user vectors; table: (N+1, d) item vectors (row 0 = padding). Scores are
    computed item tile by item tile (at most item_chunk items) and only the counts of items above / level with
    each target are kept, so a million items never need a (users x items) matrix. All products in fp32. Only
    the split's candidate items are ranked: the table is cut to them once and targets / masked items
    renumbered. The user encoder runs batch by batch; the counts are taken for up to _BLOCK_USERS users at a
    time (one pass over the item table each)."""
    table = table.float().to(device)
    nonfinite = ~torch.isfinite(table).all(1).cpu()  # (N+1,) rows that rank above every target
    nonfinite[0] = False
    if split.candidates is not None:
        nonfinite &= split.candidates
    ranked, renumber = _candidate_table(table, split.candidates, ~nonfinite)

    def per_chunk(block: torch.Tensor) -> dict[str, torch.Tensor]:
        batches = [block[s:s + batch_size] for s in range(0, len(block), batch_size)]
        # the user encoder may run under autocast
        vectors = torch.cat([users(split.history[rows].to(device)).float() for rows in batches])
        which, seen = gather_csr(split.seen_ptr, split.seen_items, block)
        target = split.target[block]
        # each user's non-finite candidates outside its own history and target: counted above, not ranked
        above = float(nonfinite.sum()) - torch.zeros(len(block), dtype=torch.float64).index_add_(
            0, which, nonfinite[seen].double()) - nonfinite[target].double()
        bad_target = nonfinite[target].to(device)
        if renumber is not None:
            target, seen = renumber[target].clamp(min=0), renumber[seen]  # a non-finite target: padding row, 0s
            which = which[seen >= 0]  # a masked item that is not ranked needs no masking
            seen = seen[seen >= 0]
        target = target.to(device)
        with torch.autocast(device.type, enabled=False):  # ...the ranking products never do
            greater, ties = count_until(vectors, ranked, target, (which, seen), item_chunk, max(ks))
            rows = ranked[target]
            # the target's fp32 score (an overflowing product of finite vectors counts too), the user vector and
            # the target row; count_until's own copy of the score is inside its tiles
            finite = (torch.isfinite((vectors * rows).sum(1)) & torch.isfinite(vectors).all(1)
                      & torch.isfinite(rows).all(1) & ~bad_target)
        return metrics_of_targets(greater + above.to(device), ties, finite, ks)
    result = _average_over_users(split, ks, batch_size, per_chunk, progress, desc,
                                 batches_per_call=max(1, _BLOCK_USERS // batch_size))
    result["nonfinite_items"] = int(nonfinite.sum())
    return result


def _candidate_table(table: torch.Tensor, candidates: torch.Tensor | None, finite: torch.Tensor | None = None):
    """(the ranked rows: candidate items, with finite vectors where `finite` is given, row 0 = padding; old id ->
    new row or -1), or (table, None) when every item is ranked."""
    if finite is None:
        finite = torch.ones(len(table), dtype=torch.bool)
    keep = finite.clone() if candidates is None else candidates & finite
    if bool(keep[1:].all()):
        return table, None
    keep = torch.cat([torch.zeros(1, dtype=torch.long), torch.nonzero(keep[1:]).squeeze(1) + 1])
    renumber = torch.full((len(finite),), -1, dtype=torch.long)
    renumber[keep] = torch.arange(len(keep))
    return table[keep.to(table.device)], renumber


def _chunk_scores(u: torch.Tensor, table: torch.Tensor, c0: int, c1: int, which: torch.Tensor,
                  items: torch.Tensor) -> torch.Tensor:
    """Scores of items c0..c1-1 with padding and each user's masked items at -inf (b, chunk), for top-K."""
    scores = u @ table[c0:c1].T
    # torch.topk ranks NaN above every number: a NaN score is never recommended (-inf, which recommend drops)
    scores.masked_fill_(torch.isnan(scores), -math.inf)
    if c0 == 0:
        scores[:, 0] = -math.inf                                     # the padding item
    inside = (items >= c0) & (items < c1)
    scores[which[inside], items[inside] - c0] = -math.inf            # history masking
    return scores


@torch.no_grad()
def top_k(users: Callable[[torch.Tensor], torch.Tensor], table: torch.Tensor, split: EvalSplit, k: int,
          batch_size: int, device: torch.device, item_chunk: int = 65536) -> tuple[torch.Tensor, torch.Tensor]:
    """The k best candidate items of every user of `split` under the same masking and products as evaluation:
    (items (U, k) ids, scores (U, k)), best first; memory bounded in users and items (a running top-k per item
    chunk). Users are not sharded: recommendation runs in one process."""
    table = table.float().to(device)
    ranked, renumber = _candidate_table(table, split.candidates)
    original = torch.arange(len(table)) if renumber is None else torch.nonzero(renumber >= 0).squeeze(1)
    k = min(k, ranked.shape[0] - 1)
    out_items, out_scores = [], []
    for start in range(0, len(split), batch_size):
        rows = torch.arange(start, min(start + batch_size, len(split)))
        u = users(split.history[rows].to(device)).float()
        which, seen = gather_csr(split.seen_ptr, split.seen_items, rows)
        if renumber is not None:
            which, seen = which[renumber[seen] >= 0], renumber[seen][renumber[seen] >= 0]
        best = torch.full((len(rows), k), -math.inf, device=device)
        best_at = torch.zeros((len(rows), k), dtype=torch.long, device=device)
        with torch.autocast(device.type, enabled=False):
            for c0 in range(0, ranked.shape[0], item_chunk):
                c1 = min(c0 + item_chunk, ranked.shape[0])
                scores = _chunk_scores(u, ranked, c0, c1, which.to(device), seen.to(device))
                best, at = torch.cat([best, scores], 1).topk(k, dim=1)
                columns = torch.arange(c0, c1, device=device).expand(len(rows), -1)
                best_at = torch.cat([best_at, columns], 1).gather(1, at)
        out_items.append(original.to(device)[best_at].cpu())
        out_scores.append(best.cpu())
    return torch.cat(out_items), torch.cat(out_scores)


def model_user_fn(model, table: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """User vectors of a Recommender from a precomputed item table (see Recommender.item_table); rank them
    against model.ranking_table(table)."""
    return lambda history: model.user_vectors(history, table)


def model_scorer(model, chunk: int = 512) -> Callable[[torch.Tensor], torch.Tensor]:
    """score_fn for a Recommender (full score rows; evaluate_embeddings is the memory-bounded path).

    The encoders may run under autocast, but the final product is fp32: in bf16 (8-bit mantissa) most
    items' scores would tie and the metrics would describe a different ranking."""
    table = model.item_table(chunk)  # (N+1, d) float
    ranked = model.ranking_table(table).float()

    def score(history: torch.Tensor) -> torch.Tensor:
        states = model.user_vectors(history, table).float()
        with torch.autocast(table.device.type, enabled=False):
            return states @ ranked.T
    return score


def popularity_vectors(item_counts: torch.Tensor) -> tuple[Callable[[torch.Tensor], torch.Tensor], torch.Tensor]:
    """Popularity as a dot-product scorer: every user is the vector [1], item i the vector [count_i]."""
    table = item_counts.float().unsqueeze(1)  # (N+1, 1); counts are exact in fp32 below 2**24
    return (lambda history: torch.ones(history.shape[0], 1, device=history.device)), table


def popularity_scorer(item_counts: torch.Tensor, device: torch.device) -> Callable[[torch.Tensor], torch.Tensor]:
    """score_fn ranking items by training popularity, the same for every user."""
    counts = item_counts.double().to(device)
    return lambda history: counts.unsqueeze(0).expand(history.shape[0], -1)


def native_bf16(device: torch.device) -> bool:
    """Whether `device` computes bf16 in hardware: a CUDA device that supports it, or a CPU with AVX512-BF16 or
    AMX. Elsewhere bf16 autocast is emulated (a 512x512 matmul took 15x fp32's time on an AVX2-only CPU)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    return device.type == "cpu" and (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported())


def resolve_precision(cfg, device: torch.device):
    """(cfg with precision=auto made concrete, a line for the log or None): auto is bf16 where the device computes
    it in hardware and fp32 elsewhere. The concrete value is what config.json records, so the run's checkpoint is
    served (recommend, export, load_run) in the precision it was evaluated in, on any machine."""
    if cfg.precision == "auto":
        chosen = "bf16" if native_bf16(device) else "fp32"
        why = "bf16 in hardware" if chosen == "bf16" else "no bf16 in hardware: bf16 would be emulated, far slower"
        return dataclasses.replace(cfg, precision=chosen), f"precision=auto: {chosen} on this {device.type} ({why})"
    if cfg.precision == "bf16" and not native_bf16(device):
        return cfg, (f"precision=bf16 on a {device.type} without bf16 in hardware: emulated, many times slower "
                     "than fp32 here (precision=auto picks fp32 on such a device)")
    return cfg, None


def autocast(cfg, device: torch.device):
    """The run's precision (cfg.precision) as an autocast context for its encoders; fp32: none."""
    precision = cfg.precision
    if precision == "auto":  # a cfg that did not come through train.run, which makes it concrete once
        precision = "bf16" if native_bf16(device) else "fp32"
    if precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast(device.type, dtype=dtype)


def by_domain(split: EvalSplit, evaluate_one: Callable[[EvalSplit], dict]) -> dict:
    """evaluate_one(split), or for a pool's split (split.domains) each domain's users ranked against that domain's
    items only: the mean over the domains of every metric (so select_metric picks by the pool's mean NDCG@10,
    each domain weighing the same), the users summed, and every domain's own metrics under "domains". A domain
    without users in this split (a slice) is left out of the mean."""
    if split.domains is None:
        return evaluate_one(split)
    domains = split.domains
    size = domains.bounds[-1] + 1
    owner = domains.of_items(split.target)
    parts = {}
    for d, name in enumerate(domains.names):
        rows = torch.nonzero(owner == d).squeeze(1)
        if not len(rows):
            continue
        part = split.subset(rows)
        own = domains.items_of(d, size)
        part.candidates, part.domains = own if split.candidates is None else own & split.candidates, None
        parts[name] = evaluate_one(part)
    metrics = [k for k in next(iter(parts.values())) if "@" in k]
    result = {k: sum(p[k] for p in parts.values()) / len(parts) for k in metrics}
    result.update(users=sum(p["users"] for p in parts.values()), repeats_skipped=split.repeats_skipped,
                  nonfinite_users=sum(p["nonfinite_users"] for p in parts.values()),
                  nonfinite_items=sum(p["nonfinite_items"] for p in parts.values()), domains=parts)
    return result


def validate(model, split: EvalSplit, cfg, device: torch.device, desc: str,
             table: torch.Tensor | None = None) -> dict:
    """Full-ranking metrics of a Recommender on `split` under the run's settings (cfg): the item table once (in
    the run's precision), then users x item tiles (fp32 products). `table`: item_table_of(...) of these same
    weights, when several splits are ranked (a backbone's table costs a pass over the whole catalogue)."""
    model.eval()
    with autocast(cfg, device):
        table = model.item_table() if table is None else table
        return by_domain(split, lambda part: evaluate_embeddings(
            model_user_fn(model, table), model.ranking_table(table), part, cfg.topk_list(), cfg.eval_batch_size,
            device, cfg.eval_item_chunk, cfg.progress, desc))


def item_table_of(model, cfg, device: torch.device) -> torch.Tensor:
    """The table validate computes, for reuse across splits."""
    model.eval()
    with autocast(cfg, device):
        return model.item_table()
