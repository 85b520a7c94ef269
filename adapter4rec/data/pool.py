"""A source pool: several datasets in one run, each keeping its own catalogue and its own users.

`dataset=a,b,c` (a comma list of dataset folders, each in the native users/items format) reads every folder as a
domain and joins them into one id space without collisions: domain d's items take the ids bounds[d]+1 ..
bounds[d+1] (in its items file's order), and every item and user id is prefixed with the domain's name
(`Amazon14_Beauty/B004756YJA`), so equal raw ids of two domains stay two items and two users. What a user's loss
may compare its target with is decided by the model from `Domains` (models/losses.py: the user's own domain unless
mixed negatives are chosen); evaluation ranks each domain's users against that domain's items only and reports
every domain and their mean (evaluate.by_domain).

`pool_exclude_items=FILE` (the target's items file) drops from every domain the items whose raw id is in FILE, so
the pool is item-disjoint from that target; the items and the interactions dropped are counted per domain.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from adapter4rec.data.files import DataError, Interactions, ItemCatalog, iter_tsv_lines, read_items, read_users
from adapter4rec.data.split import Domains

log = logging.getLogger(__name__)
SEPARATOR = "/"  # between a domain's name and an item's or a user's raw id


def pool_folders(dataset: str) -> list[str]:
    """The folders of `dataset`: one for a plain dataset, several for a pool (comma list)."""
    return [part.strip() for part in dataset.split(",") if part.strip()]


def is_pool(dataset: str) -> bool:
    return len(pool_folders(dataset)) > 1


def domain_name(folder: Path) -> str:
    return folder.resolve().name


def excluded_ids(path: Path | None) -> set[str]:
    """The raw item ids of an items file (its first column): the items a pool leaves out."""
    if path is None:
        return set()
    return {cols[0].strip() for _, cols in iter_tsv_lines(path)}


def read_pool(folders: list[Path], items_file: str, users_file: str, min_seq_len: int, unknown_items: str,
              exclude: Path | None = None) -> tuple[ItemCatalog, Interactions, Domains]:
    """Every folder as one domain, joined into one catalogue and one set of users (see the module docstring)."""
    names = [domain_name(folder) for folder in folders]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise DataError(f"dataset: the pool names the domain folder(s) {repeated} more than once (each folder is "
                        f"one domain; a domain is known by its folder's name)")
    drop = excluded_ids(exclude)
    catalog, users, seqs, bounds, stats = ItemCatalog([], [], []), [], [], [0], {}
    for name, folder in zip(names, folders):
        items = read_items(folder / items_file)
        kept = [i for i, item in enumerate(items.ids) if item not in drop]
        index = {items.ids[i]: n + 1 for n, i in enumerate(kept)}
        # an excluded item is dropped from the users' sequences too (counted), whatever unknown_items says
        domain_users = read_users(folder / users_file, index, min_seq_len,
                                  "drop" if drop else unknown_items) if kept else None
        if domain_users is None:
            raise DataError(f"{folder / items_file}: every item is in pool_exclude_items={exclude}; nothing is left")
        offset = bounds[-1]
        for i in kept:
            catalog.ids.append(f"{name}{SEPARATOR}{items.ids[i]}")
            catalog.titles.append(items.titles[i])
            catalog.abstracts.append(items.abstracts[i])
        users += [f"{name}{SEPARATOR}{user}" for user in domain_users.user_ids]
        seqs += [seq + offset for seq in domain_users.sequences]
        bounds.append(offset + len(kept))
        catalog.duplicates_skipped += items.duplicates_skipped
        stats[name] = dict(domain_users.stats, items=len(kept), items_excluded=len(items.ids) - len(kept))
        log.info("pool domain %s: %d users, %d items (%d left out as items of %s), %d interactions", name,
                 len(domain_users.user_ids), len(kept), len(items.ids) - len(kept), exclude,
                 domain_users.stats["interactions"])
    catalog.index = {item: n + 1 for n, item in enumerate(catalog.ids)}
    total = {key: sum(part[key] for part in stats.values()) for key in
             ("lines", "short_users_skipped", "unknown_items_dropped", "duplicate_users", "users", "interactions",
              "items_excluded")}
    return catalog, Interactions(users, seqs, len(catalog), dict(total, domains=stats)), Domains(names, bounds)


def window_domains(windows: torch.Tensor, domains: Domains) -> torch.Tensor:
    """(W,) the domain of each training window (W, L+1): that of its newest item (a window holds one domain)."""
    return domains.of_items(windows[:, -1])


def domain_weights(windows: torch.Tensor, domains: Domains, temperature: float) -> tuple[torch.Tensor, list[float]]:
    """Sampling weights of the training windows (W,) under the smoothed domain mix: domain d is drawn with
    probability n_d ** t / sum_e n_e ** t (n_d: its windows), a window uniformly within its domain. Returns the
    weights (summing to 1) and each domain's probability (for the log)."""
    owner = window_domains(windows, domains)
    counts = torch.bincount(owner, minlength=len(domains)).double()
    share = torch.where(counts > 0, counts.pow(temperature), torch.zeros_like(counts))
    share = share / share.sum()
    return (share / counts.clamp(min=1))[owner], share.tolist()
