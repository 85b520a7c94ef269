"""Item text -> a per-item token table, built once per run (the data path carries item ids, not text).

Row i of the table holds the token ids of item i (row 0: the padding item, length 0). A batch of item ids
is turned into model input by gathering rows and trimming to the batch's longest text, so short titles
are not padded to the paper's fixed 30 tokens. A dataset is tokenised once: the table is kept in the item
store (data/store.py) under `token_key` (the items file, the tokenizer files, the fields and the budget), packed
as one int32 record (`pack` / `unpack`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from adapter4rec.data.files import ItemCatalog


TOKEN_CACHE_VERSION = 3  # bump when what a cached table holds changes (3: a record of the item store)


@dataclass
class TokenTable:
    ids: torch.Tensor      # (num_items+1, T) int32, right-padded with pad_id
    lengths: torch.Tensor  # (num_items+1,) int64; 0 for the padding row
    pad_id: int
    truncated: int = 0     # items whose text was longer than the token budget (cut, counted)


def item_texts(catalog: ItemCatalog, fields: list[str]) -> tuple[list[str], list[str] | None]:
    """The text (or text pair) each item is encoded from: title, abstract, or title + abstract as a pair."""
    if fields == ["title"]:
        return catalog.titles, None
    if fields == ["abstract"]:
        return [a or t for a, t in zip(catalog.abstracts, catalog.titles)], None
    return catalog.titles, catalog.abstracts


def build_token_table(catalog: ItemCatalog, tokenizer, fields: list[str], max_tokens: int) -> TokenTable:
    first, second = item_texts(catalog, fields)
    enc = tokenizer(first, second, truncation=True, max_length=max_tokens, padding=False,
                    return_attention_mask=False)["input_ids"]
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    width = max(len(row) for row in enc)
    table = torch.full((len(enc) + 1, width), pad_id, dtype=torch.int32)
    lengths = torch.zeros(len(enc) + 1, dtype=torch.long)
    for i, row in enumerate(enc, start=1):
        table[i, :len(row)] = torch.tensor(row, dtype=torch.int32)
        lengths[i] = len(row)
    full = tokenizer(first, second, truncation=False, padding=False, return_length=True,
                     return_attention_mask=False, verbose=False)["length"]
    return TokenTable(table, lengths, pad_id, sum(int(n) > max_tokens for n in full))


def token_mask(table_lengths: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
    """(n, T_batch) attention mask of items `items` (n,), T_batch = their longest text."""
    lengths = table_lengths[items]
    width = int(lengths.max()) if len(items) else 1
    return (torch.arange(width, device=items.device) < lengths.unsqueeze(1)).long()


def gather_tokens(table_ids: torch.Tensor, table_lengths: torch.Tensor, items: torch.Tensor):
    """(input_ids, attention_mask), each (n, T_batch), for item indices `items` (n,) (no padding item)."""
    attention_mask = token_mask(table_lengths, items)
    return table_ids[items, :attention_mask.shape[1]].long(), attention_mask


def token_key(items_files: list[Path], tokenizer_dir: Path, fields: list[str], max_tokens: int) -> dict:
    """The item-store key of a token table: it changes whenever the items file (a pool: any of its files), the
    tokenizer's files, the fields or the budget change."""
    items_file = items_files[0]
    files = list(items_files) + sorted(p for p in tokenizer_dir.iterdir() if "token" in p.name or "vocab" in p.name
                                  or p.suffix in (".model", ".txt"))
    return {"kind": f"tokens-{items_file.stem}", "version": TOKEN_CACHE_VERSION, "items": str(items_file.resolve()) if len(items_files) == 1 else [str(p.resolve()) for p in items_files],
            "files": [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files], "fields": list(fields),
            "max_tokens": max_tokens}


def pack(table: TokenTable) -> tuple[torch.Tensor, dict]:
    """(num_items+1, T+1) int32: each row's token ids, then its length; and the facts beside it."""
    packed = torch.cat([table.ids, table.lengths.to(torch.int32).unsqueeze(1)], dim=1)
    return packed, {"pad_id": table.pad_id, "truncated": table.truncated}


def unpack(packed: torch.Tensor, facts: dict) -> TokenTable:
    return TokenTable(packed[:, :-1], packed[:, -1].long(), int(facts["pad_id"]), int(facts["truncated"]))
