"""Tests for the synthetic two-domain news data generator (tiny preset, fast)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from adapter4rec.data.synthetic import text as synthetic
from adapter4rec.data.synthetic.text import PRESETS, generate, vocabulary
from adapter4rec.data.synthetic.vocab import CONNECTORS, FILLERS, TOPICS

FILES = ("source/users.tsv", "source/items.tsv", "target/users.tsv", "target/items.tsv")


def _rows(path: Path) -> list[list[str]]:
    return [line.split("\t") for line in path.read_text(encoding="utf-8").split("\n") if line]


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("synthetic") / "data"
    generate(root, seed=7, preset="tiny")
    return root


def test_same_seed_same_bytes_and_other_seed_differs(out: Path, tmp_path: Path) -> None:
    again, other = tmp_path / "again", tmp_path / "other"
    generate(again, seed=7, preset="tiny")
    generate(other, seed=8, preset="tiny")
    for name in FILES:
        assert (out / name).read_bytes() == (again / name).read_bytes(), name
        assert (out / name).read_bytes() != (other / name).read_bytes(), name


def test_summary_matches_files(tmp_path: Path) -> None:
    summary = generate(tmp_path, seed=3, preset="tiny")
    for domain in ("source", "target"):
        users = _rows(tmp_path / domain / "users.tsv")
        assert summary[domain]["users"] == len(users)
        assert summary[domain]["items"] == len(_rows(tmp_path / domain / "items.tsv"))
        assert summary[domain]["interactions"] == sum(len(row[1].split(" ")) for row in users)


@pytest.mark.parametrize("domain,n_item_cols", [("source", 3), ("target", 2)])
def test_formats(out: Path, domain: str, n_item_cols: int) -> None:
    raw = (out / domain / "users.tsv").read_bytes() + (out / domain / "items.tsv").read_bytes()
    assert b"\r" not in raw
    items = _rows(out / domain / "items.tsv")
    assert all(len(row) == n_item_cols for row in items)
    item_ids = [row[0] for row in items]
    assert len(set(item_ids)) == len(item_ids)
    titles = [row[1] for row in items]
    assert len(set(titles)) == len(titles)
    assert all(5 <= len(t.split(" ")) <= 10 for t in titles)
    if n_item_cols == 3:
        assert all(12 <= len(row[2].split(" ")) <= 20 for row in items)
    users = _rows(out / domain / "users.tsv")
    spec = PRESETS["tiny"].source if domain == "source" else PRESETS["tiny"].target
    assert 0.9 * spec.n_users <= len(users) <= spec.n_users
    assert len({row[0] for row in users}) == len(users)
    known = set(item_ids)
    for user_id, history in users:
        seq = history.split(" ")
        assert len(seq) >= 5, user_id
        assert len(set(seq)) == len(seq), user_id
        assert set(seq) <= known, user_id


def test_id_styles(out: Path) -> None:
    src_items = [row[0] for row in _rows(out / "source/items.tsv")]
    tgt_items = [row[0] for row in _rows(out / "target/items.tsv")]
    assert all(i.startswith("N") and i[1:].isdigit() for i in src_items)
    assert all(len(i) == 12 and int(i, 16) >= 0 for i in tgt_items)
    assert all(u.startswith("U") for u, _ in _rows(out / "source/users.tsv"))
    assert all(u.startswith("cx:") for u, _ in _rows(out / "target/users.tsv"))


def test_domains_disjoint_but_share_vocabulary(out: Path) -> None:
    src, tgt = _rows(out / "source/items.tsv"), _rows(out / "target/items.tsv")
    assert not {r[0] for r in src} & {r[0] for r in tgt}
    assert not {r[1] for r in src} & {r[1] for r in tgt}
    src_words = {w for r in src for w in (r[1] + " " + r[2]).split(" ")}
    tgt_words = [w for r in tgt for w in r[1].split(" ")]
    shared = sum(w in src_words for w in tgt_words) / len(tgt_words)
    assert shared > 0.8, shared


def test_vocabulary_covers_all_text(out: Path) -> None:
    vocab = vocabulary()
    assert vocab == sorted(set(vocab))
    words = {w for name in ("source/items.tsv", "target/items.tsv")
             for row in _rows(out / name) for text in row[1:] for w in text.split(" ")}
    assert words <= set(vocab)


def test_topic_word_lists_are_disjoint() -> None:
    # Disjoint lists keep an item's topic recoverable from its text alone.
    lists = [t.nouns + t.verbs + t.adjectives for t in TOPICS] + [FILLERS, CONNECTORS]
    flat = [w for words in lists for w in words]
    assert len(flat) == len(set(flat))
    assert 14 <= len(TOPICS) <= 16


def test_order_follows_successor_structure() -> None:
    world = synthetic._build_world(7, "tiny")
    rng = np.random.default_rng(0)

    def successor_rate(seqs: list[list[int]]) -> float:
        pairs = [(a, b) for s in seqs for a, b in zip(world.target.item_topic[s][:-1],
                                                       world.target.item_topic[s][1:])]
        return float(np.mean([b in world.successors[a] for a, b in pairs]))

    seqs = list(world.target.users.values())
    observed = successor_rate(seqs)
    shuffled = successor_rate([list(rng.permutation(s)) for s in seqs])
    assert observed > 0.4 and observed > 2 * shuffled, (observed, shuffled)


def test_transition_matrix_shared_and_valid() -> None:
    world = synthetic._build_world(7, "tiny")
    np.testing.assert_allclose(world.transition.sum(axis=1), 1.0)
    assert all(1 <= len(s) <= 2 and t not in s for t, s in enumerate(world.successors))
    assert np.array_equal(world.transition, synthetic._build_world(7, "default").transition)


def test_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown preset"):
        generate(tmp_path, preset="huge")
