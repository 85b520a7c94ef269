"""Recommendations out of a run: the chunked top-K agrees with evaluation's ranking, masks each user's history,
and works for adapter-only (PEFT) checkpoints, the side network's included. Bad arguments and inputs (an --out
that would destroy a file, a repeated user, a diverged model, users with no known item) are refused or counted;
those tests use a fake model over real data, or no model at all (the checks run before it is built)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import adapter4rec.training.train as train
from adapter4rec.config import parse_args
from adapter4rec.data.files import DataError
from adapter4rec.evaluate import evaluate_embeddings, model_user_fn, top_k
from adapter4rec.serving import recommend as rec
from adapter4rec.serving.recommend import recommend
from adapter4rec.training.assemble import rebuild_run
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
    assert recommend(runs / name, None, 5, out).ranked > 0
    lines = [[user, rank, item, score] for user, rank, item, _, score in rows_of(out, titles=True)]
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
    assert recommend(runs / name, tmp_path / "new.tsv", 3, tmp_path / "new_recs.tsv").ranked == 1
    assert [row[0] for row in rows_of(tmp_path / "new_recs.tsv")] == ["someone"] * 3


def rows_of(path, titles: bool = False) -> list[list[str]]:
    """recommend's TSV after its header line: [user, rank, item, score] (with the title before the score)."""
    header, *lines = path.read_text().splitlines()
    assert header == "user\trank\titem\ttitle\tscore"
    rows = [line.split("\t") for line in lines]
    return rows if titles else [row[:3] + row[4:] for row in rows]


# ---------------------------------------------------------------------------------------------- refusals
def _model_built(*args, **kwargs):
    raise AssertionError("the model was built before the arguments were checked")


@pytest.fixture
def run_folder(tmp_path, monkeypatch):
    """A run folder with the files a run writes (a dummy best.pt: the checks come before it is read)."""
    monkeypatch.setattr(rec, "rebuild_run", _model_built)
    run = tmp_path / "run"
    run.mkdir()
    for name, text in (("best.pt", "PK\x03\x04 weights"), ("config.json", '{"lr": 0.001}\n'),
                       ("log.txt", "2024-01-01 epoch 1\tloss 0.5\n"), ("metrics.jsonl", '{"epoch": 1}\n')):
        (run / name).write_text(text)
    return run


@pytest.mark.parametrize("out,message", [
    ("best.pt", "a .pt name is a checkpoint's"),
    ("../elsewhere/model.pt", "a .pt name is a checkpoint's"),
    ("config.json", "exists and was not written by recommend"),
    ("log.txt", "exists and was not written by recommend"),
    ("metrics.jsonl", "exists and was not written by recommend"),
    (".", "is a directory"),
    ("best.pt/recs.tsv", "which is a file, not a folder"),
    ("log.txt/deeper/recs.tsv", "which is a file, not a folder"),
    ("x" * 300 + "/recs.tsv", "cannot write into"),
])
def test_an_out_that_would_destroy_a_file_is_refused_before_the_model_is_built(run_folder, out, message):
    before = {p.name: p.read_bytes() for p in run_folder.iterdir()}
    with pytest.raises(SystemExit) as stop:
        rec.main([str(run_folder), "--out", str(run_folder / out)])
    assert str(stop.value.code).startswith("recommend: ") and message in str(stop.value.code)
    assert {p.name: p.read_bytes() for p in run_folder.iterdir()} == before  # best.pt byte-identical


def test_earlier_recommendations_and_new_names_pass_the_checks(run_folder):
    (run_folder / "recs.tsv").write_text("u1\t1\ti7\t0.25\n")
    for out in ("recs.tsv", "new/recs.tsv", "empty.tsv"):
        (run_folder / "empty.tsv").touch()
        with pytest.raises(AssertionError, match="model was built"):  # past every check
            rec.main([str(run_folder), "--out", str(run_folder / out)])


def test_a_missing_or_repeating_users_file_is_refused_before_the_model_is_built(run_folder, tmp_path):
    with pytest.raises(SystemExit, match="recommend: users file .*nope.tsv: file not found"):
        rec.main([str(run_folder), "--users", str(tmp_path / "nope.tsv")])
    users = tmp_path / "users.tsv"
    users.write_text("a\ti1 i2\nb\ti2\n\nc\ti3\n a \ti4\n")
    with pytest.raises(SystemExit) as stop:
        rec.main([str(run_folder), "--users", str(users)])
    assert stop.value.code == f"recommend: {users}:5: user 'a' appears again (first on line 1); give each user one line"


# ---------------------------------------------------------------------------------------------- a fake model
class _FakeModel:
    """A dot-product model over 2-d item vectors; a user's vector is that of its newest item (row 0 unused)."""

    def __init__(self, items: torch.Tensor, users: torch.Tensor):
        self.items, self.users = items, users

    def item_table(self):
        return self.items

    def ranking_table(self, table):
        return table

    def user_vectors(self, history, table):
        return self.users[history[:, -1]]


@pytest.fixture
def fake_run(tmp_path, monkeypatch):
    """Real data (items i1..i6, i6 never interacted: not a candidate) and a fake model; returns a function that
    sets the model's user vectors. Training counts: i1 3, i2 3, i3 2, i4 1, i5 0."""
    from adapter4rec.config import Config
    from adapter4rec.training.build import load_data

    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "items.tsv").write_text("".join(f"i{i}\tItem {i}\n" for i in range(1, 7)))
    (data_dir / "users.tsv").write_text("u1\ti1 i2 i3 i4 i5\nu2\ti1 i2 i4 i3 i5\nu3\ti1 i3 i2 i5 i4\n")
    cfg = Config(dataset=str(data_dir), min_seq_len=3, max_seq_len=4, unknown_items="drop").validate()
    data = load_data(cfg)
    items = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.9, 0.1], [0.5, 0.5], [0.1, 0.9], [0.0, 1.0], [9.0, 9.0]])
    state = {"users": torch.tensor([[1.0, 0.0]] * 7)}
    monkeypatch.setattr(rec, "rebuild_run", lambda *a, **k: (_FakeModel(items, state["users"]), data, cfg, {}))
    return state


def test_a_model_with_non_finite_user_vectors_is_refused(fake_run, tmp_path):
    users = tmp_path / "users.tsv"
    users.write_text("a\ti1 i2\nb\ti5 i3\nc\ti4\n")
    fake_run["users"][3] = math.nan  # b's newest item
    out = tmp_path / "recs.tsv"
    with pytest.raises(SystemExit) as stop:
        rec.main([str(tmp_path / "run"), "--users", str(users), "--out", str(out), "--k", "2"])
    assert stop.value.code == (f"recommend: the model in {tmp_path / 'run'} gives non-finite scores for 1 of 3 users "
                               f"(e.g. user 'b'): its weights have diverged; nothing was written")
    assert not out.exists()


def test_nan_scores_are_never_recommended():
    from adapter4rec.data.split import eval_split_of

    split = eval_split_of([0, 1], [np.array([1]), np.array([2])], [0, 0], 3, True)  # histories [1], [2] masked
    table = torch.tensor([[0.0], [1.0], [2.0], [math.nan], [3.0]])  # item 3 scores NaN for everyone
    items, scores = top_k(lambda h: torch.ones(len(h), 1), table, split, 4, 8, torch.device("cpu"))
    # topk would put NaN first; here it is -inf, like the masked items, which recommend does not write
    assert items[:, :2].tolist() == [[4, 2], [4, 1]] and scores[:, :2].tolist() == [[3.0, 2.0], [3.0, 1.0]]
    assert (scores[:, 2:] == -math.inf).all()


@pytest.mark.parametrize("fallback", ["none", "popularity"])
def test_users_with_no_known_item_are_counted_or_get_popular_items(fake_run, tmp_path, capsys, fallback):
    users = tmp_path / "users.tsv"
    users.write_text("a\ti1 i2\nb\tiX iY\nc\t\nd\ti5\n")  # b: unknown items only (dropped); c: no item
    out = tmp_path / "recs.tsv"
    rec.main([str(tmp_path / "run"), "--users", str(users), "--out", str(out), "--k", "3",
              "--fallback", fallback])
    lines = rows_of(out)
    # a: history i1 i2 masked, user vector (1, 0): i3 (0.5), i4 (0.1), i5 (0): i6 is no candidate
    want = [["a", "1", "i3", "0.5"], ["a", "2", "i4", "0.1"], ["a", "3", "i5", "0"],
            ["d", "1", "i1", "1"], ["d", "2", "i2", "0.9"], ["d", "3", "i3", "0.5"]]
    summary = capsys.readouterr().out.strip()
    if fallback == "none":
        assert lines == want
        assert summary == f"wrote {out}: top-3 items of 2 users; 2 users had no known items and got no list"
    else:  # the most-trained candidates, ties in item order, in the users file's order
        popular = [["i1", "3"], ["i2", "3"], ["i3", "2"]]
        assert lines == want[:3] + [[u, str(r), *p] for u in "bc" for r, p in enumerate(popular, 1)] + want[3:]
        assert summary == (f"wrote {out}: top-3 items of 2 users; 2 users had no known items and got the run's 3 "
                           f"most popular training items (--fallback popularity)")


def test_the_popularity_fallback_serves_a_file_where_no_user_has_a_known_item(fake_run, tmp_path, capsys):
    users = tmp_path / "users.tsv"
    users.write_text("b\tiX iY\nc\t\n")
    out = tmp_path / "recs.tsv"
    rec.main([str(tmp_path / "run"), "--users", str(users), "--out", str(out), "--k", "2", "--fallback", "popularity"])
    assert [row[:3] for row in rows_of(out)] == [
        ["b", "1", "i1"], ["b", "2", "i2"], ["c", "1", "i1"], ["c", "2", "i2"]]
    assert "top-2 items of 0 users; 2 users had no known items and got the run's 2 most popular" in \
        capsys.readouterr().out
    with pytest.raises(DataError, match="no user left after filtering"):  # without a fallback: nothing to write
        rec.main([str(tmp_path / "run"), "--users", str(users), "--out", str(out), "--k", "2"])


def test_one_user_its_own_unknown_items_rule_and_an_honest_count_when_k_exceeds_the_candidates(fake_run, tmp_path,
                                                                                                capsys):
    users = tmp_path / "users.tsv"
    users.write_text("a\ti1 i2\nb\tiX i3\nd\ti5\n")
    out, run = tmp_path / "recs.tsv", str(tmp_path / "run")
    rec.main([run, "--users", str(users), "--out", str(out), "--k", "100", "--user", "a"])
    # a's history i1 i2 masked, i6 no candidate: 3 items are left, and the summary says so
    assert [row[:3] for row in rows_of(out)] == [
        ["a", "1", "i3"], ["a", "2", "i4"], ["a", "3", "i5"]]
    assert capsys.readouterr().out.strip() == (f"wrote {out}: top-3 items of 1 users (asked for 100: no user has "
                                               f"more candidates left after masking)")
    with pytest.raises(SystemExit, match="--user 'zz' is not in the users file"):
        rec.main([run, "--users", str(users), "--out", str(out), "--user", "zz"])
    with pytest.raises(DataError, match="iX"):  # the run drops unknown items; --unknown_items error stops
        rec.main([run, "--users", str(users), "--out", str(out), "--unknown_items", "error"])
    with pytest.raises(SystemExit) as stop:  # no prefix matching: --use is neither --users nor --user
        rec.main([run, "--use", str(users), "--out", str(out)])
    assert stop.value.code == 2


def test_recommend_reproduces_evaluations_top10_of_a_bf16_run(tiny_bert, tiny_data, tmp_path):
    """recommend ranks in the run's precision, as evaluation does: given each test user's history (the sequence
    without its last item), its top-10 equals the top-10 of evaluation's ranking context for every user (in fp32,
    a bf16 run's lists came out in another order for many users)."""
    from adapter4rec.evaluate import autocast, item_table_of

    train.run(parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, stage="downstream", epochs=1,
                                   max_steps_per_epoch=4, run_name="bf16", precision="bf16")))
    model, data, cfg, _ = rebuild_run(tmp_path / "bf16", cache=True)
    table = item_table_of(model, cfg, torch.device("cpu"))
    with torch.no_grad(), autocast(cfg, torch.device("cpu")):
        want, _ = top_k(model_user_fn(model, table), model.ranking_table(table), data.split.test, 10, 32,
                        torch.device("cpu"))
    histories = tmp_path / "histories.tsv"
    rows = data.split.test.users.tolist()
    with open(tiny_data / "target" / "users.tsv") as handle:
        lines = dict(line.rstrip("\n").split("\t") for line in handle if line.strip())
    histories.write_text("".join(f"{data.user_ids[r]}\t{' '.join(lines[data.user_ids[r]].split()[:-1])}\n"
                                 for r in rows))
    recommend(tmp_path / "bf16", histories, 10, tmp_path / "recs.tsv")
    got: dict[str, list[str]] = {}
    for user, _, item, _ in rows_of(tmp_path / "recs.tsv"):
        got.setdefault(user, []).append(item)
    ids = data.catalog.ids
    assert len(got) == len(rows)
    assert all(got[data.user_ids[r]] == [ids[i - 1] for i in want[n].tolist()] for n, r in enumerate(rows))


def test_the_output_names_its_columns_gives_titles_and_can_be_json_lines(fake_run, tmp_path, capsys):
    import json

    users = tmp_path / "users.tsv"
    users.write_text("a\ti1 i2\n")
    out, run = tmp_path / "recs.tsv", str(tmp_path / "run")
    rec.main([run, "--users", str(users), "--out", str(out), "--k", "2"])
    assert rows_of(out, titles=True) == [["a", "1", "i3", "Item 3", "0.5"], ["a", "2", "i4", "Item 4", "0.1"]]
    as_json = tmp_path / "recs.jsonl"
    rec.main([run, "--users", str(users), "--out", str(as_json), "--k", "2", "--format", "jsonl"])
    assert [json.loads(line) for line in as_json.read_text().splitlines()] == [
        {"user": "a", "rank": 1, "item": "i3", "title": "Item 3", "score": 0.5},
        {"user": "a", "rank": 2, "item": "i4", "title": "Item 4", "score": 0.1}]
    # both are recognised as recommend's own output, so writing them again is allowed
    rec.main([run, "--users", str(users), "--out", str(as_json), "--k", "1", "--format", "jsonl"])
    rec.main([run, "--users", str(users), "--out", str(out), "--k", "1"])
    assert len(rows_of(out)) == 1
