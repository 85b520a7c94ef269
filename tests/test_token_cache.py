"""Tokens are computed once per dataset and tokenizer and reused from disk, identical to a fresh build."""
from __future__ import annotations

import torch

from adapter4rec.config import parse_args
from adapter4rec.data.text import build_token_table
from adapter4rec.models.pretrained import load_tokenizer
from adapter4rec.training.build import load_data, token_table
from tests.conftest import tiny_args


def test_token_table_is_cached_and_identical(tiny_bert, tiny_data, tmp_path, monkeypatch):
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path))
    data = load_data(cfg)
    first = token_table(cfg, data, tiny_bert)
    assert len(list((tmp_path / "cache").glob("tokens-*.bin"))) == 1
    fresh = build_token_table(data.catalog, load_tokenizer(tiny_bert), ["title"], 16)
    monkeypatch.setattr("adapter4rec.training.build.build_token_table", lambda *a, **k: (_ for _ in ()).throw(
        AssertionError("tokenised again although cached")))
    second = token_table(cfg, data, tiny_bert)
    for table in (first, second):
        assert torch.equal(table.ids, fresh.ids) and torch.equal(table.lengths, fresh.lengths)
        assert (table.pad_id, table.truncated) == (fresh.pad_id, fresh.truncated)
        assert table.ids.dtype == torch.int32 and table.lengths.dtype == torch.long


def test_token_cache_key_follows_the_budget_and_fields(tiny_bert, tiny_data, tmp_path):
    for overrides in ({}, {"max_title_tokens": 8}, {"text_fields": "title,abstract"}):
        cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, **overrides))
        token_table(cfg, load_data(cfg), tiny_bert)
    assert len(list((tmp_path / "cache").glob("tokens-*.bin"))) == 3
