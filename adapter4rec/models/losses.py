"""Training objectives, side by side: how candidates, masking and the logQ correction are formed.

Every loss scores a user state against candidate items with the model's `Scorer` (dot, or cosine / tau):
  bce      the positive and one uniform negative per position (the paper).
  inbatch  softmax over the batch's DISTINCT items (IDvs.MoRec, IISAN), with a sampling correction.
  softmax  negatives=0: cross-entropy over the whole catalogue (RecBole's SASRec CE; exact, no correction);
           negatives=S: the batch's distinct items plus S shared uniform draws, with a correction.
Under DDP the sampled losses rank against the GLOBAL batch (`global_candidates`): every rank's distinct items
and shared negatives, with counts and slot totals summed over ranks, as one process with the whole batch would.
In the softmax losses the user's own other window items are masked out of each position's candidates
(they are positives elsewhere in the window, and evaluation masks the history), never the label itself.

Why a correction, and which (`inbatch_correction`). The batch's item slots are a sample of the catalogue, drawn
roughly in proportion to popularity p_j (M slots), plus S uniform draws; a softmax over them estimates the full
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


class Scorer(nn.Module):
    """dot: s = u . v.   cosine: s = cos(u, v) / tau, tau fixed or learned (stored as log(1/tau))."""

    def __init__(self, kind: str = "dot", temperature: float = 0.07, learn_temperature: bool = False):
        super().__init__()
        if kind not in ("dot", "cosine"):
            raise ValueError(f"score={kind!r}: expected dot or cosine")
        self.kind = kind
        log_scale = torch.tensor(math.log(1.0 / temperature))
        if kind == "cosine" and learn_temperature:
            self.log_scale = nn.Parameter(log_scale)
        else:
            self.register_buffer("log_scale", log_scale, persistent=False)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """What ranking compares: the vectors themselves (dot) or their directions (cosine); row 0 stays 0.
        At least fp32 (bf16 logits would tie and round), float64 kept as it is."""
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        return F.normalize(x, dim=-1) if self.kind == "cosine" else x

    def scale(self) -> torch.Tensor | float:
        # a learned 1/tau is clamped to 100 (CLIP's bound): beyond it a step can blow the logits up
        return self.log_scale.clamp(max=math.log(100.0)).exp() if self.kind == "cosine" else 1.0

    def pairwise(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(P, d) x (n, d) -> (P, n) logits."""
        return (self.normalize(u) @ self.normalize(v).T) * self.scale()

    def paired(self, u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
        """(..., d) x (..., d) -> (...) logits of matching rows."""
        return (self.normalize(u) * self.normalize(v)).sum(-1) * self.scale()


def bce_loss(scorer: Scorer, states: torch.Tensor, positives: torch.Tensor, negatives: torch.Tensor,
             mask: torch.Tensor) -> torch.Tensor:
    """states, positives, negatives: (B, L, d); mask (B, L) positions with a loss."""
    pos = scorer.paired(states, positives)[mask].float()  # the loss in fp32, whatever the model's dtype
    neg = scorer.paired(states, negatives)[mask].float()
    return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
            + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))


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


def candidate_softmax(logits: torch.Tensor, label: torch.Tensor, masked: torch.Tensor | None) -> torch.Tensor:
    """Cross-entropy of (P, n) logits with the label column of each row; `masked` (P, n) True = not a candidate."""
    if masked is not None:
        logits = logits.masked_fill(masked, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, label)


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
    dropout noise differs). In a single process: the inputs themselves and the identity column map."""
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
