"""user_fraction: reproducible, nested user subsets for data-scaling studies."""
from __future__ import annotations

import math

import pytest

from adapter4rec.build import load_data
from adapter4rec.config import parse_args
from tests.conftest import tiny_args


def users_at(tiny_bert, tiny_data, tmp_path, fraction, seed=0):
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, user_fraction=fraction,
                               user_fraction_seed=seed))
    return load_data(cfg)


def test_fractions_are_nested_reproducible_and_sized(tiny_bert, tiny_data, tmp_path):
    full = users_at(tiny_bert, tiny_data, tmp_path, 1.0)
    n = len(full.user_ids)
    kept = {f: users_at(tiny_bert, tiny_data, tmp_path, f).user_ids for f in (0.1, 0.25, 0.5, 1.0)}
    for f, ids in kept.items():
        assert len(ids) == math.ceil(round(f * n, 6))
        assert ids == [u for u in full.user_ids if u in set(ids)]  # file order kept
    assert set(kept[0.1]) <= set(kept[0.25]) <= set(kept[0.5]) <= set(kept[1.0])
    assert users_at(tiny_bert, tiny_data, tmp_path, 0.25).user_ids == kept[0.25]
    other_seed = users_at(tiny_bert, tiny_data, tmp_path, 0.25, seed=1).user_ids
    assert other_seed != kept[0.25] and len(other_seed) == len(kept[0.25])
    data = users_at(tiny_bert, tiny_data, tmp_path, 0.5)
    assert data.stats["users_before_fraction"] == n and len(data.split.test.history) <= len(kept[0.5])


@pytest.mark.parametrize("bad", [0, -0.5, 1.5])
def test_user_fraction_out_of_range(bad, tiny_bert, tiny_data, tmp_path):
    with pytest.raises(SystemExit, match="user_fraction"):
        parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, user_fraction=bad))
