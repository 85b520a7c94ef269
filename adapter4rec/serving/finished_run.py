"""A finished run as a Python object: rebuilt from its best.pt exactly as evaluation ranks (eval mode, the item
table and user vectors in the run's precision, the ranking products in fp32), so `recommend` here returns the
lists the `python -m adapter4rec recommend` CLI writes, and `evaluate` the metrics in results.json.

    run = load_run("runs/my-run")
    recs = run.recommend({"u1": ["item-a", "item-b"]}, k=10)        # a pandas DataFrame
    vectors = run.embed_items({"new-1": "a title the run never saw"})
    run.score(["item-a", "item-b"], ["item-c", "item-d"])          # ranking scores, fp32
    run.evaluate("test", protocol="unmasked")                       # metrics dict, as results.json's
"""
from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from adapter4rec.data.files import DataError, ItemCatalog
from adapter4rec.data.split import left_pad
from adapter4rec.evaluate import autocast, validate
from adapter4rec.run.folder import holder_of
from adapter4rec.serving.new_items import NewItems, check_run_can_embed, embed_catalog, read_new_items
from adapter4rec.serving.recommend import rank_histories
from adapter4rec.training.assemble import rebuild_run

log = logging.getLogger("adapter4rec")

UNKNOWN = ("error", "drop")
PROTOCOLS = ("masked", "unmasked")


def load_run(run_dir: str | Path, device: str = "cpu") -> FinishedRun:
    """The run in `run_dir` (its best.pt, config and data), ready to recommend and evaluate."""
    return FinishedRun(run_dir, device)


class FinishedRun:
    def __init__(self, run_dir: str | Path, device: str = "cpu"):
        self.run_dir, self.device = Path(run_dir), device
        holder = holder_of(self.run_dir)
        if holder is not None:
            log.warning("load_run: %s is still training (%s): its best.pt of the epochs so far", self.run_dir, holder)
        self.model, self.data, self.config, _ = rebuild_run(self.run_dir, device, cache=True)
        if self.data.domains is not None:
            raise ValueError(f"load_run: {self.run_dir} was trained on a pool of {len(self.data.domains)} datasets; "
                             f"a finished run here ranks one catalogue: transfer the pool model to a target first")
        results = self.run_dir / "results.json"
        self.results: dict | None = json.loads(results.read_text()) if results.is_file() else None
        self._table = None

    @property
    def items(self) -> list[str]:
        """The run's catalogue item ids (the items file's order)."""
        return self.data.catalog.ids

    def item_table(self) -> torch.Tensor:
        """(num_items+1, d) every catalogue item's embedding in the run's precision (row 0 = padding), once."""
        if self._table is None:
            with torch.no_grad(), autocast(self.config, torch.device(self.device)):
                self._table = self.model.item_table()
        return self._table

    def recommend(self, histories: Mapping[str, Sequence[str]] | Sequence[Sequence[str]], k: int = 10,
                  exclude_seen: bool | None = None, new_items: Mapping[str, str] | str | Path | None = None,
                  only_new: bool = False, unknown_items: str = "error") -> pd.DataFrame:
        """Top-k items per user: columns user, rank (1 = best), item, title, score (the ranking score), users in
        the given order. histories: user -> item ids, oldest first (or a list of them: users 0, 1, ...).
        exclude_seen: mask the history (default: the run's protocol). new_items: items the run never saw, id ->
        title (or an items file), ranked by their text with the catalogue (alone with only_new). unknown_items:
        an item not in the run's catalogue raises (error) or is left out (drop); a user left with no known item
        gets no rows. Fewer than k rows for a user when fewer candidates are left after masking."""
        if k < 1:
            raise ValueError(f"recommend: k={k}: expected a positive integer")
        if unknown_items not in UNKNOWN:
            raise ValueError(f"recommend: unknown_items={unknown_items!r}: expected one of {', '.join(UNKNOWN)}")
        if only_new and new_items is None:
            raise ValueError("recommend: only_new ranks the new_items alone; give new_items")
        named = histories if isinstance(histories, Mapping) else dict(enumerate(histories))
        rows = {user: self._rows(user, items, unknown_items) for user, items in named.items()}
        known = [user for user, seq in rows.items() if len(seq)]
        new = None if new_items is None else self._new_items(new_items)
        titles = self.data.catalog.titles + (new.titles if new is not None else [])
        ids = self.items + (new.ids if new is not None else [])
        out = []
        if known:
            embedded = None if new is None else self._embed(new)
            items, scores = rank_histories(self.model, self.data, self.config, [rows[u] for u in known],
                                           [str(u) for u in known], k, 256, self.device, self.run_dir, embedded,
                                           only_new, exclude_seen)
            for user, user_items, user_scores in zip(known, items.tolist(), scores.tolist()):
                out += [(user, rank, ids[item - 1], titles[item - 1], score) for rank, (item, score)
                        in enumerate(zip(user_items, user_scores), 1) if score != float("-inf")]
        frame = pd.DataFrame(out, columns=["user", "rank", "item", "title", "score"])
        frame.attrs["users_without_known_items"] = len(rows) - len(known)
        return frame

    def embed_items(self, texts: Mapping[str, str] | Sequence[str]) -> torch.Tensor:
        """(m, d) fp32 embeddings of items given by their text alone (id -> title, or titles), computed as the
        run's content path embeds a catalogue item with that text and no trained ID (text runs only)."""
        named = texts if isinstance(texts, Mapping) else {f"text-{i}": t for i, t in enumerate(texts)}
        return self._embed(self._catalog(named)).rows

    def score(self, history: Sequence[str], items: Sequence[str]) -> torch.Tensor:
        """(len(items),) fp32 ranking scores of catalogue items after `history` (item ids, oldest first): the
        dot products that recommend and evaluation order by (cosine runs: of the normalised vectors)."""
        seq = self._rows("history", history, "error")
        wanted = torch.as_tensor(self._rows("items", items, "error"), dtype=torch.long)
        table = self.item_table()
        with torch.no_grad(), autocast(self.config, torch.device(self.device)):
            user = self.model.user_vectors(left_pad([seq], self.config.max_seq_len).to(self.device), table)
        ranking = self.model.ranking_table(table).float()
        return (ranking[wanted.to(ranking.device)] @ user.float().squeeze(0)).cpu()

    def evaluate(self, split: str = "test", protocol: str = "masked") -> dict:
        """Full-ranking metrics on the run's own valid or test users (as results.json's "test" / "test_no_mask")."""
        if split not in ("valid", "test") or protocol not in PROTOCOLS:
            raise ValueError(f"evaluate: split={split!r}, protocol={protocol!r}: expected valid|test and "
                             f"{'|'.join(PROTOCOLS)}")
        unmasked_run = self.config.eval_repeats == "no_mask"
        if unmasked_run and protocol == "masked":
            raise ValueError("evaluate: the run ranks without history masking (eval_repeats=no_mask); "
                             "protocol='unmasked' is its protocol")
        name = split if protocol == "masked" or unmasked_run else f"{split}_no_mask"
        chosen = getattr(self.data.split, name, None)
        if chosen is None:
            raise ValueError(f"evaluate: the run has no {split} split without history masking (only test has one)")
        return validate(self.model, chosen, self.config, torch.device(self.device), split, self.item_table())

    def _rows(self, user, items: Sequence[str], unknown: str) -> np.ndarray:
        index = self.data.catalog.index
        missing = [item for item in items if item not in index]
        if missing and unknown == "error":
            raise DataError(f"{user!r}: item {missing[0]!r} is not in the run's items file ({len(missing)} of "
                            f"{len(items)} are not); unknown_items='drop' leaves such items out")
        return np.array([index[item] for item in items if item in index], dtype=np.int64)

    def _new_items(self, new_items) -> ItemCatalog:
        if isinstance(new_items, Mapping):
            return self._catalog(new_items)
        return read_new_items(Path(new_items), self.data.catalog)

    def _catalog(self, named: Mapping[str, str]) -> ItemCatalog:
        taken = [item for item in named if item in self.data.catalog.index]
        if taken:
            raise DataError(f"new items: {taken[0]!r} is already in the run's items file; list items it never saw")
        ids = [str(item) for item in named]
        return ItemCatalog(ids, [str(t) for t in named.values()], [""] * len(ids),
                           {item: row + 1 for row, item in enumerate(ids)})

    def _embed(self, items: ItemCatalog) -> NewItems:
        check_run_can_embed(self.config, "new items")
        with torch.no_grad(), autocast(self.config, torch.device(self.device)):
            embedded = embed_catalog(self.model, self.config, items)
        return NewItems(embedded.ids, embedded.rows.float(), embedded.titles)
