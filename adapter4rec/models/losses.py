"""Training objectives, side by side: how candidates, masking and the logQ correction are formed.

Every loss scores a user state against candidate items with the model's `Scorer` (dot, or cosine / tau):
  bce      the positive and one uniform negative per position (the paper).
  inbatch  softmax over the batch's DISTINCT items (IDvs.MoRec, IISAN), with a sampling correction.
  softmax  negatives=0: cross-entropy over the whole catalogue (RecBole's SASRec CE; exact, no correction);
           negatives=S: the batch's distinct items plus S shared uniform draws, with a correction.
Under DDP the sampled losses rank against the GLOBAL batch (`global_candidates`): every rank's distinct items
and shared negatives, with counts and slot totals summed over ranks, as one process with the whole batch would;
and every loss divides its summed per-position losses by the global position count over the world size
(`rank_denominator`), so DDP's average of the ranks' gradients is the gradient of the whole batch's mean loss
however the positions fall on the ranks (a rank's own mean would weigh its positions by P / (W P_r)).
In the softmax losses the user's own other window items are masked out of each position's candidates
(they are positives elsewhere in the window, and evaluation masks the history), never the label itself.

Why a correction, and which (`inbatch_correction`). The batch's item slots are a sample of the catalogue, drawn
roughly in proportion to popularity p_j (M slots), plus S uniform draws; p_j is item j's share of the slots of
the training windows (LeaveOneOut.window_counts, what the batches are drawn from; +1 smoothed, Recommender.
log_popularity), not of all training interactions. A softmax over them estimates the full
softmax only after each candidate's logit is corrected by how likely it was to be a candidate:
  multiplicity  s_j - log E[c_j] + log c_j  with E[c_j] = M p_j + S / n and c_j the candidate's count among the
                slots: the sampled softmax over the multiset of slots (each slot corrected by log of its
                expected count), with the duplicate slots of an item merged into one column (hence + log c_j).
  inclusion     s_j - log pi_j,  pi_j = 1 - (1 - p_j)^M (1 - 1/n)^S: the probability that item j is among the
                DISTINCT candidates at all, which saturates at 1 for popular items.
  popularity    s_j - log p_j: the correction for a candidate set of all slots applied to the distinct items,
                as IDvs.MoRec does; it ignores the saturation, so popular items are over-corrected, more so the
                larger the batch (tests/test_losses.py shows it with free logits). Kept for comparison.
  none          s_j.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from adapter4rec import dist

CORRECTIONS = ("multiplicity", "inclusion", "popularity", "none")
MAX_LOG_SCALE = math.log(100.0)  # a learned 1/tau is kept <= 100 (CLIP's bound): beyond it a step can blow the
#                                  logits up


class Scorer(nn.Module):
    """dot: s = u . v.   cosine: s = cos(u, v) / tau, tau fixed or learned (stored as log(1/tau)).

    The logits are computed in fp32 (at least) even under bf16 / fp16 autocast: the loss compares them, and in
    bf16 (8-bit mantissa) many would tie or round. A learned log(1/tau) is capped at MAX_LOG_SCALE by clamping
    the PARAMETER after each optimizer step (`clamp_`, Recommender.after_step) and on load, not in the forward:
    a forward clamp has zero gradient above the cap, so a parameter a step had pushed past it could never come
    back. A fixed temperature is used as given."""

    def __init__(self, kind: str = "dot", temperature: float = 0.07, learn_temperature: bool = False):
        super().__init__()
        if kind not in ("dot", "cosine"):
            raise ValueError(f"score={kind!r}: expected dot or cosine")
        self.kind = kind
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if kind == "cosine" and learn_temperature:
            if log_scale > MAX_LOG_SCALE:
                raise ValueError(f"temperature={temperature} with learn_temperature: a learned 1/tau is capped at "
                                 f"100, so it cannot start at {1 / temperature:.4g}; use temperature >= 0.01")
            self.log_scale = nn.Parameter(log_scale)
            # a checkpoint written before the cap moved out of the forward may hold a value above it
            self.register_load_state_dict_post_hook(_clamp_after_load)
        else:
            self.register_buffer("log_scale", log_scale, persistent=False)

    @torch.no_grad()
    def clamp_(self) -> None:
        """Bring a learned log(1/tau) back under the cap (call after every optimizer step); no-op otherwise."""
        if isinstance(self.log_scale, nn.Parameter):
            self.log_scale.clamp_(max=MAX_LOG_SCALE)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """What ranking compares: the vectors themselves (dot) or their directions (cosine); row 0 stays 0.
        At least fp32 (bf16 logits would tie and round), float64 kept as it is."""
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        return F.normalize(x, dim=-1) if self.kind == "cosine" else x

    def scale(self) -> torch.Tensor | float:
        return self.log_scale.exp() if self.kind == "cosine" else 1.0

    def pairwise(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(P, d) x (n, d) -> (P, n) logits, fp32 or wider. Autocast is off here: it would run the product in
        bf16 / fp16 even on the fp32 operands of `normalize`; gradients still reach half-precision inputs."""
        with torch.autocast(u.device.type, enabled=False):
            return (self.normalize(u) @ self.normalize(v).T) * self.scale()

    def paired(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(..., d) x (..., d) -> (...) logits of matching rows, fp32 or wider (autocast off, as in pairwise)."""
        with torch.autocast(u.device.type, enabled=False):
            return (self.normalize(u) * self.normalize(v)).sum(-1) * self.scale()


def _clamp_after_load(scorer: Scorer, incompatible_keys) -> None:
    """load_state_dict post-hook (a module-level function, so a pickled model keeps it)."""
    scorer.clamp_()


def rank_denominator(positions: torch.Tensor) -> torch.Tensor | None:
    """What this rank divides its SUMMED per-position losses by under DDP: P / W, with P the number of loss
    positions of the whole distributed batch (all-reduced: one small collective per step) and W the world size.
    DDP averages the ranks' gradients, so the update is then the gradient of the global batch's mean loss, as one
    process with the whole batch computes it; each rank's own mean would weigh a position by P / (W P_r), i.e.
    by how many positions its rank happened to get. None in a single process: the plain mean, as always.
    positions: 0-dim count of this rank's loss positions."""
    if dist.world_size() == 1:
        return None
    total = dist.all_reduce_sum(positions.detach().to(torch.float64).reshape(1).clone())
    return total[0] / dist.world_size()


def reduce_positions(loss_fn, *args, denominator: torch.Tensor | None = None) -> torch.Tensor:
    """loss_fn(*args, reduction=...) over loss positions: its mean (denominator None), else its sum / denominator
    (see rank_denominator; a rank without positions then adds 0, not the NaN of an empty mean)."""
    if denominator is None:
        return loss_fn(*args, reduction="mean")
    total = loss_fn(*args, reduction="sum")
    return total / denominator.to(total.dtype)


def bce_loss(scorer: Scorer, states: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
             mask: torch.Tensor, denominator: torch.Tensor | None = None) -> torch.Tensor:
    """states, positives, negatives: (B, L, d); mask (B, L) positions with a loss; denominator: rank_denominator."""
    pos = scorer.paired(states, positives)[mask].float()  # the loss in fp32, whatever the model's dtype
    neg = scorer.paired(states, negatives)[mask].float()
    bce = F.binary_cross_entropy_with_logits
    return (reduce_positions(bce, pos, torch.ones_like(pos), denominator=denominator)
            + reduce_positions(bce, neg, torch.zeros_like(neg), denominator=denominator))


def log_expected_count(log_p: torch.Tensor, slots: int, shared: int, num_items: int) -> torch.Tensor:
    """log(M p_j + S / n) for candidate probabilities log_p (n_cand,)."""
    terms = [log_p + math.log(max(slots, 1))]
    if shared:
        terms.append(torch.full_like(log_p, math.log(shared / num_items)))
    return torch.logsumexp(torch.stack(terms), 0)


def log_inclusion(log_p: torch.Tensor, slots: int, shared: int, num_items: int) -> torch.Tensor:
    """log(1 - (1 - p_j)^M (1 - 1/n)^S): the log probability that item j is among the distinct candidates."""
    log_absent = slots * torch.log1p(-log_p.exp().clamp(max=1 - 1e-12))
    if shared:
        log_absent = log_absent + shared * math.log1p(-1.0 / num_items)
    return torch.log((-torch.expm1(log_absent)).clamp(min=1e-30))


def correction(kind: str, log_p: torch.Tensor, counts: torch.Tensor, slots: int, shared: int,
               num_items: int) -> torch.Tensor | float:
    """The term ADDED to each candidate's logit (see the module docstring). log_p: (n,) log-popularity of the
    candidates; counts: (n,) how often each occurs among the M slots and S shared draws."""
    if kind == "multiplicity":
        return torch.log(counts.float()) - log_expected_count(log_p, slots, shared, num_items)
    if kind == "inclusion":
        return -log_inclusion(log_p, slots, shared, num_items)
    if kind == "popularity":
        return -log_p
    if kind == "none":
        return 0.0
    raise ValueError(f"inbatch_correction={kind!r}: expected one of {', '.join(CORRECTIONS)}")


def candidate_softmax(logits: torch.Tensor, label: torch.Tensor, masked: torch.Tensor | None,
                      denominator: torch.Tensor | None = None) -> torch.Tensor:
    """Cross-entropy of (P, n) logits with the label column of each row; `masked` (P, n) True = not a candidate;
    denominator: rank_denominator (None: the mean over the P rows)."""
    if masked is not None:
        logits = logits.masked_fill(masked, torch.finfo(logits.dtype).min)
    return reduce_positions(F.cross_entropy, logits, label, denominator=denominator)


def own_items_mask(seqs: torch.Tensor, slot_column: torch.Tensor, rows: torch.Tensor, label: torch.Tensor,
                   columns: int) -> torch.Tensor:
    """(P, columns) True where the candidate is another item of the position's own window.

    seqs: (B, L+1) windows; slot_column (B, L+1): each slot's candidate column (-1 = none, e.g. padding);
    rows (P,): the window of each loss position; label (P,): its target column (never masked)."""
    own = torch.zeros(seqs.shape[0], columns + 1, dtype=torch.bool, device=seqs.device)
    own.scatter_(1, slot_column.clamp(min=-1) + 1, True)  # column 0 of `own` collects "no candidate"
    masked = own[rows, 1:]
    masked[torch.arange(len(label), device=label.device), label] = False
    return masked


def global_candidates(ids: torch.Tensor, emb: torch.Tensor, counts: torch.Tensor, slots: int, draws: int):
    """The candidate set of the whole distributed batch: (ids (G,), embeddings (G, d) with gradients back to the
    rank that encoded them, counts (G,) summed over ranks, column (G,) of each local candidate, slots, draws).
    An item several ranks hold keeps the copy of the lowest rank (the same function of the same weights; only
    dropout noise differs). In a single process: the inputs themselves and no column map (None: each candidate
    is its own column)."""
    if dist.world_size() == 1:
        return ids, emb, counts, None, slots, draws
    id_parts = dist.all_gather_rows(ids)
    all_ids = torch.cat(id_parts)
    all_emb = torch.cat(dist.all_gather_rows(emb, differentiable=True))
    all_counts = torch.cat(dist.all_gather_rows(counts))
    unique, where = torch.unique(all_ids, return_inverse=True)
    positions = torch.arange(len(all_ids), device=ids.device)
    first = torch.full((len(unique),), len(all_ids), device=ids.device).scatter_reduce(0, where, positions, "amin")
    total = torch.zeros(len(unique), dtype=all_counts.dtype, device=ids.device).scatter_add(0, where, all_counts)
    offset = sum(len(part) for part in id_parts[:dist.rank()])
    sums = dist.all_reduce_sum(torch.tensor([float(slots), float(draws)], device=ids.device))
    return unique, all_emb[first], total, where[offset:offset + len(ids)], int(sums[0]), int(sums[1])
