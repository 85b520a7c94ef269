"""Recommendations out of a run: the chunked top-K agrees with evaluation's ranking, masks each user's history,
and works for adapter-only (PEFT) checkpoints, the side network's included."""
from __future__ import annotations

import pytest
import torch

import adapter4rec.train as train
from adapter4rec.config import parse_args
from adapter4rec.evaluate import evaluate_embeddings, model_user_fn, top_k
from adapter4rec.export import rebuild_run
from adapter4rec.recommend import recommend
from tests.conftest import tiny_args


@pytest.fixture(scope="module")
def runs(tiny_bert, tiny_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("recs")
    common = dict(stage="downstream", epochs=1, max_steps_per_epoch=4, run_name="full")
    train.run(parse_args(tiny_args(tiny_bert, tiny_data / "target", out, **common)))
    peft = dict(common, run_name="houlsby", tune="peft", adapter="houlsby", train_head="true")
    train.run(parse_args(tiny_args(tiny_bert, tiny_data / "target", out, **peft)))
    side = dict(common, run_name="side", tune="peft", adapter="side", side_layers="1")
    train.run(parse_args(tiny_args(tiny_bert, tiny_data / "target", out, **side)))
    return out


@pytest.mark.parametrize("item_chunk", [7, 65536])
def test_top1_agrees_with_evaluation(runs, item_chunk):
    model, data, cfg, _ = rebuild_run(runs / "full")
    table = model.item_table()
    users, ranked = model_user_fn(model, table), model.ranking_table(table)
    split = data.split.test
    items, scores = top_k(users, ranked, split, 10, 32, torch.device("cpu"), item_chunk)
    metrics = evaluate_embeddings(users, ranked, split, [1, 10], 32, torch.device("cpu"), item_chunk)
    hits1 = (items[:, 0] == split.target).double().mean().item()
    hits10 = (items == split.target.unsqueeze(1)).any(1).double().mean().item()
    assert hits1 == pytest.approx(metrics["hr@1"], abs=1e-12) and hits10 == pytest.approx(metrics["hr@10"], abs=1e-12)
    assert (scores[:, :-1] >= scores[:, 1:]).all()  # best first


@pytest.mark.parametrize("name", ["full", "houlsby", "side"])
def test_recommend_writes_top_k_per_user_without_their_history(runs, name, tiny_data, tmp_path):
    out = tmp_path / "recs.tsv"
    assert recommend(runs / name, None, 5, out) > 0
    lines = [line.split("\t") for line in out.read_text().splitlines()]
    history = {}
    for line in (tiny_data / "target" / "users.tsv").read_text().splitlines():
        user, items = line.split("\t")
        history[user] = set(items.split())
    by_user: dict[str, list] = {}
    for user, rank, item, score in lines:
        by_user.setdefault(user, []).append((int(rank), item, float(score)))
    assert set(by_user) <= set(history) and len(by_user) > 10
    for user, recs in by_user.items():
        assert [r for r, _, _ in recs] == [1, 2, 3, 4, 5]
        assert not {i for _, i, _ in recs} & history[user], user  # the whole history is masked
        assert all(a[2] >= b[2] for a, b in zip(recs, recs[1:]))
    # a new users file in the same format: only its users, ranked from their own histories
    first = next(iter(history))
    (tmp_path / "new.tsv").write_text(f"someone\t{' '.join(sorted(history[first])[:3])}\n")
    assert recommend(runs / name, tmp_path / "new.tsv", 3, tmp_path / "new_recs.tsv") == 1
    assert [line.split("\t")[0] for line in (tmp_path / "new_recs.tsv").read_text().splitlines()] == ["someone"] * 3
