"""Items added after training, given only their text: read, checked against the run, embedded by the content path.

A text run (item_tower=modal or fused) embeds any item from its title (and abstract) alone: the new items are
tokenised as the run's catalogue was (tokenizer, text_fields, max_title_tokens) and passed through the item
tower's content path live (backbone, side network or adapters, head; no cached row and no ID, which a new item
does not have: models/item_encoders.py `encode_texts`). Their rows are appended to the catalogue's table, so
recommend ranks old and new items together with the scorer evaluation uses (or the new ones alone).

Refused with one line naming the file: an ID-only run (it has no content path), an image run (new items would
need pixels), an item id that is already in the run's catalogue (its text would be encoded twice under one id).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adapter4rec.data.files import DataError, ItemCatalog, iter_tsv_lines, read_items
from adapter4rec.data.text import build_token_table
from adapter4rec.models.pretrained import checkpoint_dir, load_tokenizer


@dataclass
class NewItems:
    ids: list[str]
    rows: torch.Tensor  # (m, d) fp32 item-tower embeddings, in file order
    titles: list[str]   # as the items file gives them, for the recommendations written


def check_run_can_embed(cfg, path: Path) -> None:
    """Before any model is built: only a text run has a path from an item's text to its embedding."""
    if cfg.item_tower == "id":
        raise SystemExit(f"recommend: --new_items {path}: the run's items are ID embeddings (item_tower=id), which "
                         f"exist only for the items it trained; new items need a text run (item_tower=modal or "
                         f"fused)")
    if cfg.modality != "text":
        raise SystemExit(f"recommend: --new_items {path}: the run encodes images; new items given by text are "
                         f"supported for text runs only")


def read_new_items(path: Path, catalog: ItemCatalog) -> ItemCatalog:
    """The new items file (the items format: `item_id<TAB>title[<TAB>abstract]`), refusing ids already in the run's
    catalogue with the line that names one."""
    new = read_items(path)
    known = [item for item in new.ids if item in catalog.index]
    if known:
        line = next(number for number, cols in iter_tsv_lines(path) if cols[0].strip() == known[0])
        raise DataError(f"{path}:{line}: item {known[0]!r} is already in the run's items file "
                        f"({len(known)} of the {len(new)} new items are); list only items the run has never seen")
    return new


def embed_new_items(model, cfg, path: Path, catalog: ItemCatalog) -> NewItems:
    """The new items' embeddings from their text, tokenised as the run's catalogue was."""
    return embed_catalog(model, cfg, read_new_items(path, catalog))


def embed_catalog(model, cfg, items: ItemCatalog) -> NewItems:
    """Embeddings of `items` from their text alone (no ID), tokenised as the run's catalogue was."""
    tokens = build_token_table(items, load_tokenizer(checkpoint_dir(cfg)), cfg.text_field_list(), cfg.max_title_tokens)
    return NewItems(items.ids, model.item_encoder.encode_texts(tokens), items.titles)


def extend_candidates(candidates: torch.Tensor | None, num_items: int, new: int, only_new: bool) -> torch.Tensor:
    """(num_items + 1 + new,) bool: the run's candidate items (all of them when None) and the new ones; with
    only_new, the new ones alone."""
    old = torch.ones(num_items + 1, dtype=torch.bool) if candidates is None else candidates.clone()
    if only_new:
        old[:] = False
    old[0] = False  # the padding item
    return torch.cat([old, torch.ones(new, dtype=torch.bool)])
