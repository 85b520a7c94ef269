"""Leave-one-out split and left padding (paper protocol, reference §6).

For a user with items s_1..s_n (n >= 3):
  train  = the last L+1 items of s_1..s_{n-2}: inputs are positions 0..L-1, targets positions 1..L
           (train_windows=all: also the earlier windows, ending L items apart, so that every training
           interaction s_2..s_{n-2} is a target exactly once per epoch, not only the newest L)
  valid  = history: last L items of s_1..s_{n-2}, target s_{n-1}
  test   = history: last L items of s_1..s_{n-1}, target s_n
Sequences are LEFT-padded with item 0, so the newest item always sits at the last position.
History masking at evaluation uses the user's whole history, not only the L-item window.
Candidates (eval_candidates): `all` ranks every item of the items file; `interacted` only the items that occur
in some kept user's sequence (what the original code and RecBole rank: an item nobody interacted with can never
be a target, and counting it as a competitor makes numbers incomparable with theirs).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from adapter4rec.data.files import Interactions


def left_pad(seqs: list[np.ndarray], length: int) -> torch.Tensor:
    """(len(seqs), length) int64; the last `length` items of each sequence, right-aligned, 0 = padding."""
    out = np.zeros((len(seqs), length), dtype=np.int64)
    for row, seq in enumerate(seqs):
        tail = seq[-length:]
        if len(tail):
            out[row, length - len(tail):] = tail
    return torch.from_numpy(out)


@dataclass
class Domains:
    """The domains of a pool (data/pool.py): domain d owns the item ids bounds[d]+1 .. bounds[d+1]."""
    names: list[str]
    bounds: list[int]  # (D+1,) cumulative item counts, bounds[0] = 0

    def __len__(self) -> int:
        return len(self.names)

    def of_items(self, ids: torch.Tensor) -> torch.Tensor:
        """The domain index of every item id (any shape; the padding item 0 gets domain 0: mask it yourself)."""
        return torch.searchsorted(torch.tensor(self.bounds[1:], dtype=torch.long), torch.as_tensor(ids).contiguous())

    def items_of(self, d: int, size: int) -> torch.Tensor:
        """(size,) bool: the items of domain d (size = num_items + 1)."""
        mask = torch.zeros(size, dtype=torch.bool)
        mask[self.bounds[d] + 1:self.bounds[d + 1] + 1] = True
        return mask


@dataclass
class EvalSplit:
    """Users to rank at validation or test time."""
    users: torch.Tensor        # (U,) row of each user in Interactions (for tracing back to user ids)
    history: torch.Tensor      # (U, L) model input, left padded
    target: torch.Tensor       # (U,) held-out item
    seen_ptr: torch.Tensor     # (U+1,) CSR offsets into seen_items; empty rows when history is not masked
    seen_items: torch.Tensor   # (nnz,) items to exclude from the ranking of each user
    repeats_skipped: int       # users left out because the target is already in their history
    candidates: torch.Tensor | None = None  # (num_items+1,) bool items that are ranked; None = every item
    domains: Domains | None = None  # a pool: each domain's users ranked against its own items (evaluate.by_domain)

    def __len__(self) -> int:
        return len(self.target)

    def subset(self, rows: torch.Tensor) -> "EvalSplit":
        """The users at positions `rows`, with their masking and the same candidates (e.g. the cold-start slice)."""
        which, items = gather_csr(self.seen_ptr, self.seen_items, rows)
        counts = torch.bincount(which, minlength=len(rows))
        ptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
        return EvalSplit(self.users[rows], self.history[rows], self.target[rows], ptr, items, 0, self.candidates,
                         self.domains)


def gather_csr(ptr: torch.Tensor, items: torch.Tensor, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(position in `rows`, item) pairs of the CSR rows `rows` (ptr (U+1,), items (nnz,)), in row order, vectorised."""
    starts, counts = ptr[rows], ptr[rows + 1] - ptr[rows]
    total = int(counts.sum())
    which = torch.repeat_interleave(torch.arange(len(rows)), counts)
    offsets = torch.arange(total) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
    return which, items[torch.repeat_interleave(starts, counts) + offsets]


@dataclass
class LeaveOneOut:
    train: torch.Tensor        # (U, L+1) training windows
    valid: EvalSplit
    test: EvalSplit
    item_counts: torch.Tensor  # (num_items+1,) training interactions per item (row 0 = 0): the popularity baseline
    test_no_mask: EvalSplit | None = None  # the test users without history masking (the RecBole protocol), so
    #                                        a history-masked run also reports the numbers published that way
    # (num_items+1,) occurrences of each item in the slots of `train` (row 0 = 0), derived from it: what the
    # in-batch / sampled softmax draws its candidates from, so the popularity of its logQ corrections. It differs
    # from item_counts: train_windows=last drops the items before a user's newest L+1, and with `all` the item
    # that two consecutive windows share is drawn twice.
    window_counts: torch.Tensor = field(init=False)

    def __post_init__(self) -> None:
        self.window_counts = slot_counts(self.train, len(self.item_counts))


def slot_counts(windows: torch.Tensor, size: int) -> torch.Tensor:
    """(size,) int64 how many non-padding slots of `windows` hold each item; row 0 (padding) is 0."""
    counts = torch.bincount(windows.reshape(-1), minlength=size)
    counts[0] = 0
    return counts


def _eval_split(data: Interactions, cut: int, max_seq_len: int, eval_repeats: str) -> EvalSplit:
    """Target = seq[cut] (cut < 0), history = seq[:cut]."""
    rows, histories, targets = [], [], []
    skipped = 0
    for row, seq in enumerate(data.sequences):
        history, target = seq[:cut], int(seq[cut])
        if eval_repeats == "skip" and target in set(history.tolist()):
            skipped += 1
            continue
        rows.append(row)
        histories.append(history)
        targets.append(target)
    return eval_split_of(rows, histories, targets, max_seq_len, eval_repeats == "skip", skipped)


def eval_split_of(rows: list[int], histories: list[np.ndarray], targets: list[int], max_seq_len: int,
                  masked: bool, skipped: int = 0, candidates: torch.Tensor | None = None) -> EvalSplit:
    """An EvalSplit of these users: the model sees the last L items of each history; with `masked` the whole
    history is excluded from the ranking (CSR rows of its distinct items)."""
    seen = [np.unique(h) if masked else np.zeros(0, dtype=np.int64) for h in histories]
    ptr = np.concatenate([[0], np.cumsum([len(s) for s in seen])]).astype(np.int64)
    items = np.concatenate(seen) if seen else np.zeros(0, dtype=np.int64)
    return EvalSplit(torch.tensor(rows, dtype=torch.long), left_pad(histories, max_seq_len),
                     torch.tensor(targets, dtype=torch.long), torch.from_numpy(ptr),
                     torch.from_numpy(items.astype(np.int64)), skipped, candidates)


def training_windows(parts: list[np.ndarray], max_seq_len: int, which: str) -> list[np.ndarray]:
    """The (<= L+1)-item windows that train: the newest one per user, or (all) windows ending at m, m-L, m-2L, ...
    of a training part of m items, so consecutive windows share one item (the input of the older window's
    targets ends where the newer window's begins) and each target position 1..m-1 occurs in exactly one."""
    if which == "last":
        return parts
    if which != "all":
        raise ValueError(f"train_windows={which!r}: expected last or all")
    windows = []
    for part in parts:
        for end in range(len(part), 1, -max_seq_len):
            windows.append(part[max(0, end - max_seq_len - 1):end])
    return windows


def candidate_items(data: Interactions, which: str) -> torch.Tensor | None:
    """(num_items+1,) bool mask of the ranked items (row 0 = padding, False), or None when every item is."""
    if which == "all":
        return None
    if which != "interacted":
        raise ValueError(f"eval_candidates={which!r}: expected all or interacted")
    mask = torch.zeros(data.num_items + 1, dtype=torch.bool)
    mask[torch.from_numpy(np.unique(np.concatenate(data.sequences)))] = True
    mask[0] = False
    return mask


def cold_start_items(num_items: int, share: float, seed: int = 0) -> torch.Tensor | None:
    """(num_items+1,) bool: a seeded `share` of the items (the same for every run and model: `seed` is not the
    run's), held out of training by leave_one_out(cold=...) for the cold-start study; None for share 0."""
    if share <= 0:
        return None
    order = torch.randperm(num_items, generator=torch.Generator().manual_seed(seed)) + 1
    cold = torch.zeros(num_items + 1, dtype=torch.bool)
    cold[order[:round(share * num_items)]] = True
    return cold


def leave_one_out(data: Interactions, max_seq_len: int, eval_repeats: str = "skip",
                  candidates: str = "all", windows: str = "last", cold: torch.Tensor | None = None) -> LeaveOneOut:
    """cold: (num_items+1,) bool items removed from every training window (never trained, so cold at evaluation
    and recommendation as new items are); validation and test histories and targets keep them."""
    if min(len(s) for s in data.sequences) < 3:
        raise ValueError("leave_one_out needs every user to have >= 3 items (train pair, valid, test)")
    train_parts = [s[:-2] for s in data.sequences]
    if cold is not None:
        warm = ~cold.numpy()
        train_parts = [part[warm[part]] for part in train_parts]
    counts = np.bincount(np.concatenate(train_parts), minlength=data.num_items + 1)
    counts[0] = 0
    valid, test = _eval_split(data, -2, max_seq_len, eval_repeats), _eval_split(data, -1, max_seq_len, eval_repeats)
    unmasked = _eval_split(data, -1, max_seq_len, "no_mask") if eval_repeats == "skip" else None
    valid.candidates = test.candidates = candidate_items(data, candidates)
    if unmasked is not None:
        unmasked.candidates = test.candidates
    trained = training_windows(train_parts, max_seq_len, windows)
    if cold is not None:  # a window left with fewer than 2 items has no loss position
        trained = [window for window in trained if len(window) >= 2]
    return LeaveOneOut(
        train=left_pad(trained, max_seq_len + 1),
        valid=valid,
        test=test,
        item_counts=torch.from_numpy(counts.astype(np.int64)),
        test_no_mask=unmasked,
    )
