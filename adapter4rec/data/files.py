"""Reading the paper's tab-separated files with errors that name the file, the line and the value.

users file: `user_id<TAB>item item item ...` (time-ordered, space-separated, no header)
items file: `item_id<TAB>title[<TAB>abstract]` (MIND has 3 columns, Adressa 2)
image items file: `item_id` per line (HM `v<int>`, Amazon ASIN); further columns are ignored
CRLF line endings are accepted; blank lines are skipped.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from adapter4rec.errors import UserError

log = logging.getLogger(__name__)


class DataError(UserError, ValueError):
    """Bad input data; the message names the file, the line and the offending value."""


def iter_tsv_lines(path: Path) -> Iterator[tuple[int, list[str]]]:
    """(1-based line number, tab-split columns) for every non-blank line; CR stripped; UTF-8 checked."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, "rb") as handle:
        for number, raw in enumerate(handle, start=1):
            try:
                # utf-8-sig on line 1: a byte-order mark (Excel, Notepad) must not become part of the first id
                line = raw.decode("utf-8-sig" if number == 1 else "utf-8").rstrip("\r\n")
            except UnicodeDecodeError as err:
                raise DataError(f"{path}:{number}: not valid UTF-8 ({err.reason} at byte {err.start})") from None
            if line.strip():
                yield number, line.split("\t")


@dataclass
class ItemCatalog:
    """Items in file order; item index i+1 is ids[i] (index 0 is the padding item)."""
    ids: list[str]
    titles: list[str]
    abstracts: list[str]
    index: dict[str, int] = field(default_factory=dict)
    duplicates_skipped: int = 0

    def __len__(self) -> int:
        return len(self.ids)


def read_items(path: Path) -> ItemCatalog:
    """Read an items file. Identical duplicate lines are skipped (counted); conflicting duplicates fail; a line with
    more than the format's 3 columns fails (reading a wider file as id/title/abstract would be silently wrong)."""
    catalog = ItemCatalog([], [], [])
    for number, cols in iter_tsv_lines(path):
        if len(cols) < 2:
            raise DataError(f"{path}:{number}: expected 'item_id<TAB>title[<TAB>abstract]', got {cols[0][:80]!r}")
        if len(cols) > 3:  # refused, not ignored: MIND's raw news.tsv (8 columns) would read its category as title
            raise DataError(f"{path}:{number}: {len(cols)} tab-separated columns, the items format has at most 3 "
                            f"('item_id<TAB>title[<TAB>abstract]'); the 2nd column here is {cols[1][:40]!r}. "
                            f"Keep the id, title and abstract columns (Dataset/convert.py converts RecBole, "
                            f"MiniOneRec and CSV data)")
        item_id, title = cols[0].strip(), cols[1].strip()
        abstract = cols[2].strip() if len(cols) > 2 else ""
        if not item_id:
            raise DataError(f"{path}:{number}: empty item id")
        if not title:
            raise DataError(f"{path}:{number}: item {item_id!r} has an empty title")
        if item_id in catalog.index:
            first = catalog.index[item_id] - 1
            if (catalog.titles[first], catalog.abstracts[first]) != (title, abstract):
                raise DataError(f"{path}:{number}: item {item_id!r} appears again with different text "
                                f"(first: {catalog.titles[first][:60]!r}, here: {title[:60]!r})")
            catalog.duplicates_skipped += 1
            continue
        catalog.ids.append(item_id)
        catalog.titles.append(title)
        catalog.abstracts.append(abstract)
        catalog.index[item_id] = len(catalog.ids)
    if not catalog.ids:
        raise DataError(f"{path}: no items")
    if catalog.duplicates_skipped:
        log.warning("%s: skipped %d identical duplicate item lines", path, catalog.duplicates_skipped)
    return catalog


def read_item_names(path: Path) -> ItemCatalog:
    """Read an image items file (first column = item name; the image lives in the LMDB under that name).
    Repeated names are skipped (counted): a name carries no other content that could conflict."""
    catalog = ItemCatalog([], [], [])
    for number, cols in iter_tsv_lines(path):
        item_id = cols[0].strip()
        if not item_id:
            raise DataError(f"{path}:{number}: empty item id")
        if item_id in catalog.index:
            catalog.duplicates_skipped += 1
            continue
        catalog.ids.append(item_id)
        catalog.index[item_id] = len(catalog.ids)
    if not catalog.ids:
        raise DataError(f"{path}: no items")
    if catalog.duplicates_skipped:
        log.warning("%s: skipped %d repeated item names", path, catalog.duplicates_skipped)
    catalog.titles = catalog.abstracts = [""] * len(catalog.ids)
    return catalog


@dataclass
class Interactions:
    """Users kept after filtering, each a time-ordered array of item indices in 1..num_items."""
    user_ids: list[str]
    sequences: list[np.ndarray]
    num_items: int
    stats: dict


def read_users(path: Path, item_index: dict[str, int], min_seq_len: int, unknown_items: str,
               allow_empty: bool = False) -> Interactions:
    """Read a users file, mapping item ids through `item_index`.

    unknown_items='error' stops at the first item missing from the items file; 'drop' removes such items
    (counted). Users with fewer than `min_seq_len` items (after dropping) are skipped and counted. No user left is
    an error unless allow_empty (recommend's popularity fallback serves such users)."""
    users, seqs = [], []
    stats = {"lines": 0, "short_users_skipped": 0, "unknown_items_dropped": 0, "duplicate_users": 0}
    seen_users: set[str] = set()
    for number, cols in iter_tsv_lines(path):
        stats["lines"] += 1
        if len(cols) != 2 or not cols[0].strip():
            raise DataError(f"{path}:{number}: expected 'user_id<TAB>item item ...', got {len(cols)} column(s): "
                            f"{cols[0][:80]!r}")
        user, items = cols[0].strip(), cols[1].split()
        seq = []
        for item in items:
            idx = item_index.get(item)
            if idx is None:
                if unknown_items == "error":
                    raise DataError(f"{path}:{number}: user {user!r} references item {item!r}, which is not in "
                                    f"the items file (set unknown_items=drop to drop such items, counted)")
                stats["unknown_items_dropped"] += 1
                continue
            seq.append(idx)
        if user in seen_users:
            stats["duplicate_users"] += 1  # kept: the original format has one line per user, but ids can repeat
        seen_users.add(user)
        if len(seq) < min_seq_len:
            stats["short_users_skipped"] += 1
            continue
        users.append(user)
        seqs.append(np.asarray(seq, dtype=np.int64))
    if not users and not allow_empty:
        raise DataError(f"{path}: no user left after filtering ({stats['lines']} lines, "
                        f"{stats['short_users_skipped']} users shorter than min_seq_len={min_seq_len}, "
                        f"{stats['unknown_items_dropped']} unknown items dropped)")
    stats["users"] = len(users)
    stats["interactions"] = int(sum(len(s) for s in seqs))
    return Interactions(users, seqs, len(item_index), stats)


def subsample_users(interactions: Interactions, fraction: float, seed: int) -> Interactions:
    """Keep ceil(fraction x users) users chosen by one seeded permutation of the user list, in file order.

    Nested by construction: for the same seed, the users kept at a fraction f are all kept at any f' > f,
    so a scaling curve compares growing data sets, not different samples."""
    if fraction >= 1.0:
        return interactions
    n = len(interactions.user_ids)
    rank = np.empty(n, dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(n)] = np.arange(n)  # user i's position in the permutation
    keep = np.flatnonzero(rank < max(1, int(np.ceil(round(fraction * n, 6)))))  # round: 0.1 * 30 = 3.0000000000000004
    stats = dict(interactions.stats, users=len(keep), interactions=int(sum(len(interactions.sequences[i])
                                                                         for i in keep)))
    return Interactions([interactions.user_ids[i] for i in keep], [interactions.sequences[i] for i in keep],
                        interactions.num_items, stats)
