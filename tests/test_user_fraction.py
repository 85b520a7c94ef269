"""user_fraction: reproducible, nested user subsets for data-scaling studies; evaluation keeps every user."""
from __future__ import annotations

import math

import pytest
import torch

from adapter4rec.config import parse_args
from adapter4rec.data.files import read_users, subsample_users
from adapter4rec.training.build import load_data
from tests.conftest import tiny_args


def kept_users(tiny_bert, tiny_data, tmp_path, fraction, seed=0) -> list[str]:
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path))
    interactions = read_users(tiny_data / "target" / "users.tsv", load_data(cfg).catalog.index, 5, "error")
    return subsample_users(interactions, fraction, seed).user_ids


def test_fractions_are_nested_reproducible_and_sized(tiny_bert, tiny_data, tmp_path):
    full = kept_users(tiny_bert, tiny_data, tmp_path, 1.0)
    n = len(full)
    kept = {f: kept_users(tiny_bert, tiny_data, tmp_path, f) for f in (0.1, 0.25, 0.5, 1.0)}
    for f, ids in kept.items():
        assert len(ids) == math.ceil(round(f * n, 6))
        assert ids == [u for u in full if u in set(ids)]  # file order kept
    assert set(kept[0.1]) <= set(kept[0.25]) <= set(kept[0.5]) <= set(kept[1.0])
    assert kept_users(tiny_bert, tiny_data, tmp_path, 0.25) == kept[0.25]
    other_seed = kept_users(tiny_bert, tiny_data, tmp_path, 0.25, seed=1)
    assert other_seed != kept[0.25] and len(other_seed) == len(kept[0.25])


def test_fraction_trains_on_the_share_and_evaluates_everyone(tiny_bert, tiny_data, tmp_path):
    full = load_data(parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path)))
    half = load_data(parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, user_fraction=0.5)))
    n = len(full.user_ids)
    assert len(half.split.train) == half.stats["train_users"] == math.ceil(n / 2) < len(full.split.train)
    assert torch.equal(half.split.test.target, full.split.test.target)  # the same test users and items
    assert torch.equal(half.split.valid.target, full.split.valid.target)
    assert half.split.item_counts.sum() < full.split.item_counts.sum()  # popularity from the training share


@pytest.mark.parametrize("bad", [0, -0.5, 1.5])
def test_user_fraction_out_of_range(bad, tiny_bert, tiny_data, tmp_path):
    with pytest.raises(SystemExit, match="user_fraction"):
        parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, user_fraction=bad))
