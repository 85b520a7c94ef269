"""rank_metrics against hand-computed HR@K / NDCG@K, and evaluate() masking / repeat handling on a tiny split."""
from __future__ import annotations

import dataclasses
import itertools

import math

import numpy as np
import pytest
import torch

from adapter4rec.data.files import Interactions
from adapter4rec.data.split import leave_one_out
from adapter4rec.evaluate import evaluate, rank_metrics

INF = math.inf


def lg(x: float) -> float:
    return 1.0 / math.log2(x)


def test_distinct_scores_hand_computed():
    # 3 users x 6 items, all scores distinct; K in {1, 3, 5}.
    scores = torch.tensor([
        [0.1, 0.2, 9.0, 0.3, 0.4, 0.5],  # target col 2 is the highest          -> rank 0
        [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],  # target col 2, two items above        -> rank 2
        [5.0, 4.0, 3.0, 2.0, 1.0, 0.0],  # target col 5, five items above       -> rank 5 (miss at K=5)
    ])
    out = rank_metrics(scores, torch.tensor([2, 2, 5]), [1, 3, 5])
    # HR@K = [rank < K]; NDCG@K = 1/log2(rank+2) if rank < K else 0
    torch.testing.assert_close(out["hr@1"], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out["hr@3"], torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out["hr@5"], torch.tensor([1.0, 1.0, 0.0], dtype=torch.float64))
    # rank 0: 1/log2(2) = 1; rank 2: 1/log2(4) = 0.5
    torch.testing.assert_close(out["ndcg@1"], torch.tensor([1.0, 0.0, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out["ndcg@3"], torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))
    torch.testing.assert_close(out["ndcg@5"], torch.tensor([1.0, 0.5, 0.0], dtype=torch.float64))


def test_rank_twelve_is_a_miss_and_rank_four_hits_at_five():
    # 14 items: target has 12 items strictly above it -> rank 12; second row target has 4 above -> rank 4
    row = torch.arange(14, 0, -1).float()  # 14, 13, ..., 1 (column c has c items above it)
    out = rank_metrics(torch.stack([row, row]), torch.tensor([12, 4]), [5, 13])
    torch.testing.assert_close(out["hr@5"], torch.tensor([0.0, 1.0], dtype=torch.float64))
    torch.testing.assert_close(out["hr@13"], torch.tensor([1.0, 1.0], dtype=torch.float64))
    # rank 4: 1/log2(6); rank 12: 1/log2(14)
    torch.testing.assert_close(out["ndcg@5"], torch.tensor([0.0, lg(6)], dtype=torch.float64))
    torch.testing.assert_close(out["ndcg@13"], torch.tensor([lg(14), lg(6)], dtype=torch.float64))


def test_ties_resolved_by_expectation():
    # target (col 1, score 2) is below g=1 item (score 3) and tied with t=2 others (cols 2, 3).
    # Its rank is uniform in {1, 2, 3}:
    #   HR@1 = 0; HR@2 = P(rank=1) = 1/3; HR@3 = 2/3; HR@4 = 1
    #   NDCG@3 = (1/log2(3) + 1/log2(4)) / 3          (rank 3 is outside the top 3)
    #   NDCG@4 = (1/log2(3) + 1/log2(4) + 1/log2(5)) / 3
    scores = torch.tensor([[3.0, 2.0, 2.0, 2.0, 1.0, 0.0]])
    out = rank_metrics(scores, torch.tensor([1]), [1, 2, 3, 4])
    assert out["hr@1"].item() == pytest.approx(0.0)
    assert out["hr@2"].item() == pytest.approx(1 / 3)
    assert out["hr@3"].item() == pytest.approx(2 / 3)
    assert out["hr@4"].item() == pytest.approx(1.0)
    assert out["ndcg@1"].item() == pytest.approx(0.0)
    assert out["ndcg@2"].item() == pytest.approx(lg(3) / 3)
    assert out["ndcg@3"].item() == pytest.approx((lg(3) + lg(4)) / 3)
    assert out["ndcg@4"].item() == pytest.approx((lg(3) + lg(4) + lg(5)) / 3)


@pytest.mark.parametrize("k", [1, 3, 7])
def test_constant_scores_give_chance_level(k):
    # every item tied: g=0, t=N-1 -> rank uniform in 0..N-1: HR@K = K/N, NDCG@K = sum_{r<K} 1/log2(r+2) / N
    n = 10
    out = rank_metrics(torch.zeros(4, n), torch.tensor([0, 3, 5, 9]), [k])
    torch.testing.assert_close(out[f"hr@{k}"], torch.full((4,), k / n, dtype=torch.float64))
    expected = sum(lg(r + 2) for r in range(k)) / n
    torch.testing.assert_close(out[f"ndcg@{k}"], torch.full((4,), expected, dtype=torch.float64))


def test_minus_inf_items_are_excluded():
    # cols 1 and 2 would be above the target but are excluded (-inf): only col 0 stays above -> rank 1
    scores = torch.tensor([[5.0, -INF, -INF, 1.0, 0.0]])
    out = rank_metrics(scores, torch.tensor([3]), [1, 2])
    assert out["hr@1"].item() == 0.0 and out["hr@2"].item() == 1.0
    assert out["ndcg@2"].item() == pytest.approx(lg(3))
    # and -inf items tied among themselves do not count as ties of a finite target
    scores = torch.tensor([[-INF, -INF, -INF, 1.0, 0.0]])
    assert rank_metrics(scores, torch.tensor([3]), [1])["hr@1"].item() == 1.0


# ---------------------------------------------------------------------------------------------- evaluate()
# Fixed per-item scores (same for every user). Column 0 (padding) scores highest of all, so a bug that lets
# it count moves every target down one rank.
ITEM_SCORES = torch.tensor([100.0, 50.0, 40.0, 30.0, 25.0, 10.0, 20.0, 5.0])  # items 0..7


def _score_fn(seen_histories: list):
    def score(history: torch.Tensor) -> torch.Tensor:
        seen_histories.append(history.clone())
        return ITEM_SCORES.unsqueeze(0).repeat(history.shape[0], 1)
    return score


def _interactions(with_repeat: bool) -> Interactions:
    seqs = [[1, 2, 3, 4, 5],   # test: history 1..4 (window of 3 = 2,3,4), target 5
            [6, 7, 1]]         # test: history 6,7 (left padded), target 1
    if with_repeat:
        seqs.append([2, 3, 2])  # test target 2 repeats a history item
    return Interactions([f"u{i}" for i in range(len(seqs))], [np.array(s) for s in seqs], 7, {})


def test_evaluate_masks_whole_history_and_padding():
    split = leave_one_out(_interactions(False), max_seq_len=3).test
    histories = []
    res = evaluate(_score_fn(histories), split, [1, 2], batch_size=1, device=torch.device("cpu"))
    # score_fn gets the left-padded L=3 windows
    torch.testing.assert_close(torch.cat(histories), torch.tensor([[2, 3, 4], [0, 6, 7]]))
    # u0: items 1-4 masked (item 1 is outside the 3-item window but still in the history), col 0 masked:
    #     left 5:10, 6:20, 7:5 -> target 5 has rank 1  -> hr@1 0, hr@2 1, ndcg@2 = 1/log2(3)
    # u1: 0, 6, 7 masked -> target 1 (50) is the best -> rank 0 -> hr@1 1, ndcg@2 1
    assert res["users"] == 2 and res["repeats_skipped"] == 0
    assert res["hr@1"] == pytest.approx(0.5)
    assert res["hr@2"] == pytest.approx(1.0)
    assert res["ndcg@2"] == pytest.approx((lg(3) + 1.0) / 2)


def test_evaluate_chunking_does_not_change_results():
    split = leave_one_out(_interactions(True), max_seq_len=3).test
    a = evaluate(_score_fn([]), split, [1, 2, 5], batch_size=1, device=torch.device("cpu"))
    b = evaluate(_score_fn([]), split, [1, 2, 5], batch_size=100, device=torch.device("cpu"))
    assert a == pytest.approx(b)


def test_eval_repeats_skip_leaves_the_user_out():
    split = leave_one_out(_interactions(True), max_seq_len=3, eval_repeats="skip").test
    res = evaluate(_score_fn([]), split, [1, 2], batch_size=8, device=torch.device("cpu"))
    # u2 is left out and counted; u0 and u1 as in the test above
    assert res["users"] == 2 and res["repeats_skipped"] == 1
    assert split.users.tolist() == [0, 1]
    assert res["hr@1"] == pytest.approx(0.5) and res["hr@2"] == pytest.approx(1.0)


def test_eval_repeats_no_mask_keeps_the_user_and_masks_only_padding():
    split = leave_one_out(_interactions(True), max_seq_len=3, eval_repeats="no_mask").test
    res = evaluate(_score_fn([]), split, [1, 2], batch_size=8, device=torch.device("cpu"))
    # nothing masked except column 0:
    # u0 target 5 (10): above are 1,2,3,4,6 (50,40,30,25,20) -> rank 5 -> miss at 1 and 2
    # u1 target 1 (50): nothing above (col 0 excluded)      -> rank 0
    # u2 target 2 (40): item 1 (50) above                   -> rank 1
    assert res["users"] == 3 and res["repeats_skipped"] == 0
    assert res["hr@1"] == pytest.approx(1 / 3)
    assert res["hr@2"] == pytest.approx(2 / 3)
    assert res["ndcg@2"] == pytest.approx((0.0 + 1.0 + lg(3)) / 3)


# ---------------------------------------------------------------------------------------------- model_scorer
def test_model_scorer_scores_in_float32_under_bf16_autocast(tiny_bert, tiny_data, tmp_path):
    from adapter4rec.config import parse_args
    from adapter4rec.evaluate import model_scorer
    from adapter4rec.training.build import build_model, load_data
    from tests.conftest import tiny_args

    # ID tower: the item table is exactly the fp32 embedding matrix (random, all rows distinct)
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, item_tower="id", precision="bf16"))
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data).eval()
    history = data.split.test.history[:8]
    with torch.autocast("cpu", dtype=torch.bfloat16):  # what train.validate does for precision=bf16
        scores = model_scorer(model)(history)
    # the scorer's .float() casts say it: the ranking product is meant to be fp32 ...
    assert scores.dtype == torch.float32
    # ... so that distinct items get distinct scores (in bf16 most of the 193 columns collide)
    assert all(len(torch.unique(row)) == model.num_items + 1 for row in scores)


# ---------------------------------------------------------------------------------------------- evaluate_embeddings
@pytest.mark.parametrize("item_chunk", [1, 7, 1000])
@pytest.mark.parametrize("repeats", ["skip", "no_mask"])
def test_item_chunked_evaluation_equals_full_rows(item_chunk, repeats):
    from adapter4rec.evaluate import evaluate_embeddings, popularity_scorer, popularity_vectors

    rng = np.random.default_rng(0)
    n_items, d = 30, 4
    seqs = [rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(3, 12))) for _ in range(40)]
    split = leave_one_out(Interactions([str(i) for i in range(40)], seqs, n_items, {}), 5, repeats).test
    # integer-valued embeddings: every score is exact in fp32, so both paths see the same ties
    table = torch.from_numpy(rng.integers(-2, 3, size=(n_items + 1, d))).float()
    users = torch.from_numpy(rng.integers(-2, 3, size=(n_items + 1, d))).float()
    user_fn = lambda h: users[h[:, -1]]  # noqa: E731 - a user is the vector of its newest item
    full = evaluate(lambda h: user_fn(h) @ table.T, split, [1, 5, 10], 6, torch.device("cpu"))
    chunked = evaluate_embeddings(user_fn, table, split, [1, 5, 10], 6, torch.device("cpu"), item_chunk)
    assert full == pytest.approx(chunked, abs=1e-12)
    # popularity as a dot product (user [1], item [count]) equals ranking by counts
    counts = torch.from_numpy(rng.integers(0, 4, size=n_items + 1))
    pop_users, pop_table = popularity_vectors(counts)
    a = evaluate(popularity_scorer(counts, torch.device("cpu")), split, [1, 5], 6, torch.device("cpu"))
    b = evaluate_embeddings(pop_users, pop_table, split, [1, 5], 6, torch.device("cpu"), item_chunk)
    assert a == pytest.approx(b, abs=1e-12)


# ---------------------------------------------------------------------------------------------- ties on the production path
@pytest.mark.parametrize("item_chunk", [7, 1000, 65536])
def test_equal_float_embeddings_tie_on_the_chunked_path(item_chunk):
    """A collapsed model (every item the same float vector) is at chance level: with the target's score from an
    elementwise product and its competitors' from a GEMM, HR@10 over 1,000 items came out 0.455, not 0.01."""
    from adapter4rec.evaluate import evaluate_embeddings

    n_items, d = 1000, 16
    gen = torch.Generator().manual_seed(0)
    table = (0.1 * torch.randn(1, d, generator=gen)).expand(n_items + 1, d).clone()
    users = 0.1 * torch.randn(n_items + 1, d, generator=gen)
    seqs = [np.array([1 + (7 * u + j) % n_items for j in range(4)]) for u in range(50)]
    split = leave_one_out(Interactions([str(i) for i in range(50)], seqs, n_items, {}), 5, "no_mask").test
    res = evaluate_embeddings(lambda h: users[h[:, -1]], table, split, [10], 16, torch.device("cpu"), item_chunk)
    assert res["hr@10"] == pytest.approx(10 / n_items, abs=1e-12)
    expected_ndcg = sum(1.0 / math.log2(r + 2) for r in range(10)) / n_items
    assert res["ndcg@10"] == pytest.approx(expected_ndcg, abs=1e-12)


@pytest.mark.parametrize("item_chunk", [5, 64, 65536])
def test_duplicated_float_items_tie_like_a_float64_reference(item_chunk):
    """Random float embeddings where every item has an identical twin: the fp32 chunked path must count the twin
    as a tie (rank by expectation), exactly as a float64 full-row reference does."""
    from adapter4rec.evaluate import evaluate_embeddings

    rng = np.random.default_rng(1)
    n_items, d = 120, 8
    base = rng.normal(size=(n_items // 2 + 1, d)) * 0.1
    table = torch.from_numpy(np.concatenate([base[:1], base[1:], base[1:]])).float()  # item i and i + 60 twins
    users = torch.from_numpy(rng.normal(size=(n_items + 1, d)) * 0.1).float()
    seqs = [rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(3, 10)), replace=False) for _ in range(60)]
    split = leave_one_out(Interactions([str(i) for i in range(60)], seqs, n_items, {}), 5, "skip").test
    user_fn = lambda h: users[h[:, -1]]  # noqa: E731
    want = evaluate(lambda h: user_fn(h).double() @ table.double().T, split, [1, 5, 10], 8, torch.device("cpu"))
    got = evaluate_embeddings(user_fn, table, split, [1, 5, 10], 8, torch.device("cpu"), item_chunk)
    assert got == pytest.approx(want, abs=1e-12)
    assert any(0 < got[k] for k in ("hr@1", "hr@5"))


def test_mrr_hand_computed_and_with_ties():
    scores = torch.tensor([[0.1, 0.2, 9.0, 0.3], [5.0, 4.0, 3.0, 2.0], [1.0, 1.0, 1.0, 0.0]])
    out = rank_metrics(scores, torch.tensor([2, 2, 1]), [1, 2, 3])
    # ranks 1 and 3; the third target ties with 2 others at the top: rank uniform over 1..3
    torch.testing.assert_close(out["mrr@3"], torch.tensor([1.0, 1 / 3, (1 + 1 / 2 + 1 / 3) / 3], dtype=torch.float64))
    torch.testing.assert_close(out["mrr@2"], torch.tensor([1.0, 0.0, (1 + 1 / 2) / 3], dtype=torch.float64))
    torch.testing.assert_close(out["mrr@1"], torch.tensor([1.0, 0.0, 1 / 3], dtype=torch.float64))


def test_only_interacted_items_are_ranked():
    """eval_candidates=interacted: an item no kept user interacted with is no competitor (the original's and
    RecBole's protocol); =all ranks it."""
    from adapter4rec.evaluate import evaluate_embeddings

    seqs = [np.array([1, 2, 3]), np.array([2, 3, 1])]  # items 4 and 5 exist in the catalogue only
    data = Interactions(["a", "b"], seqs, 5, {})
    table = torch.tensor([[0.0], [1.0], [2.0], [3.0], [9.0], [8.0]])  # the unused items score highest
    user_fn = lambda h: torch.ones(h.shape[0], 1)  # noqa: E731
    for which, hr1 in (("interacted", 0.5), ("all", 0.0)):
        split = leave_one_out(data, 3, "no_mask", candidates=which).test
        res = evaluate_embeddings(user_fn, table, split, [1, 3], 8, torch.device("cpu"))
        full = evaluate(lambda h: user_fn(h) @ table.T, split, [1, 3], 8, torch.device("cpu"))
        assert res["hr@1"] == pytest.approx(hr1) and full == pytest.approx(res)  # targets 3 (top) and 1 (last)
    interacted = leave_one_out(data, 3, "no_mask", candidates="interacted").test.candidates
    assert interacted.tolist() == [False, True, True, True, False, False]


# ---------------------------------------------------------------------------------------------- the tiled counts
def _counting_case(kind: str, seed: int = 0):
    """(users (b, d), table (N+1, d), target (b,), which, items) with ties: 'dyadic' (small multiples of 1/16:
    every fp32 product and sum is exact, so many distinct items tie), 'twins' (random floats, every item has an
    identical twin), 'collapsed' (every item the same random vector). Histories have duplicates, may hold the
    target, and reach every part of the catalogue."""
    gen = torch.Generator().manual_seed(seed)
    b, n_items, d = 37, 101, 6
    if kind == "dyadic":
        table = torch.randint(-3, 4, (n_items + 1, d), generator=gen).float() / 16
        users = torch.randint(-3, 4, (b, d), generator=gen).float() / 16
    elif kind == "twins":
        half = 0.1 * torch.randn(n_items // 2 + 1, d, generator=gen)
        table = torch.cat([half, half[1:], half[1:2]])  # items i, i + 50 (and 101 for item 1) are the same vector
        users = 0.1 * torch.randn(b, d, generator=gen)
    else:
        table = (0.1 * torch.randn(1, d, generator=gen)).expand(n_items + 1, d).clone()
        users = 0.1 * torch.randn(b, d, generator=gen)
    target = torch.randint(1, n_items + 1, (b,), generator=gen)
    lengths = torch.randint(0, 16, (b,), generator=gen)
    which = torch.repeat_interleave(torch.arange(b), lengths)
    items = torch.randint(1, n_items + 1, (len(which),), generator=gen)
    items[:3] = target[which[:3]]  # a history holding its own target (excluded once, not twice)
    return users, table, target, which, items


def _reference_counts(users, table, target, which, items):
    """Straightforward float64 full rows: items above / level with the target among 1..N minus the history and
    the target itself (the target's score read from the same product as its competitors)."""
    # elementwise products summed in one order for every column: a BLAS product may give a remainder of columns
    # to another kernel that rounds differently (seen on an AMD EPYC), splitting the very ties this checks
    scores = (users.double().unsqueeze(1) * table.double().unsqueeze(0)).sum(-1)
    rows = torch.arange(len(target))
    own = scores[rows, target].clone().unsqueeze(1)
    scores[:, 0] = -INF
    scores[which, items] = -INF
    scores[rows, target] = -INF
    return (scores > own).sum(1).double(), (scores == own).sum(1).double()


@pytest.mark.parametrize("item_chunk", [1, 7, 64, 1000])   # 102 rows: chunks that do not divide them, and one
@pytest.mark.parametrize("group", [1, 5, 128])             # larger; groups of 1, 5 (37 = 7 * 5 + 2) and all
@pytest.mark.parametrize("threads", [1, 3])
def test_tiled_counts_equal_a_float64_reference(item_chunk, group, threads):
    from adapter4rec.ranking import count_above

    for kind in ("dyadic", "twins", "collapsed"):
        users, table, target, which, items = _counting_case(kind)
        want = _reference_counts(users, table, target, which, items)
        got = count_above(users, table, target, (which, items), item_chunk, group=group, threads=threads)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), kind
        if kind != "dyadic":  # the default tile (1024, capped by item_chunk) agrees too
            default = count_above(users, table, target, (which, items), item_chunk)
            assert torch.equal(default[0], want[0]) and torch.equal(default[1], want[1]), kind
    # the cases do exercise ties: twins tie with their twin, a collapsed model with everything
    assert int(want[1].sum()) > 0 and bool((want[0] == 0).all())


def test_tiled_counts_with_several_tiles_per_group_and_workers():
    """Tile sizes are independent of item_chunk (here 64 > tile): every combination gives the same counts."""
    from adapter4rec.ranking import count_above

    users, table, target, which, items = _counting_case("dyadic", seed=3)
    want = _reference_counts(users, table, target, which, items)
    for tile, group, threads in ((3, 4, 2), (16, 37, 4), (101, 2, 1), (102, 64, 2)):
        got = count_above(users, table, target, (which, items), 64, group=group, tile=tile, threads=threads)
        assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1]), (tile, group, threads)


@pytest.mark.parametrize("stop_at", [1, 5, 20, 200])
def test_counting_stops_only_for_users_out_of_every_top_k(stop_at, monkeypatch):
    """count_until: a user whose target is above fewer than stop_at items gets exactly count_above's counts (ties
    included); any other user a count >= stop_at, which gives the same metrics (all 0 at K <= stop_at). The later
    rounds count fewer users (the saving), in spans that cover every row once."""
    from adapter4rec import ranking
    from adapter4rec.evaluate import metrics_from_counts
    from adapter4rec.ranking import early_exit, tiles

    calls = []
    kernel = tiles.count_above

    def recording(u, table, target, seen, item_chunk, span=None, **options):
        calls.append((len(target), span))
        return kernel(u, table, target, seen, item_chunk, span=span, **options)
    monkeypatch.setattr(tiles, "count_above", recording)
    for kind, (tile, group, threads) in itertools.product(("dyadic", "twins", "collapsed", "random"),
                                                           ((3, 4, 2), (5, 128, 1), (1, 2, 3))):
        users, table, target, which, items = _counting_case("twins" if kind == "random" else kind, seed=7)
        if kind == "random":
            table = torch.randn(table.shape, generator=torch.Generator().manual_seed(1))
        want = kernel(users, table, target, (which, items), 64, group=group, tile=tile, threads=threads)
        calls.clear()
        got = ranking.count_until(users, table, target, (which, items), 64, stop_at, group=group, tile=tile,
                                  threads=threads)
        exact = want[0] < stop_at
        assert torch.equal(got[0][exact], want[0][exact]) and torch.equal(got[1][exact], want[1][exact]), kind
        assert bool((got[0][~exact] >= stop_at).all()), kind
        for a, b in zip(metrics_from_counts(*got, [stop_at]).values(), metrics_from_counts(*want, [stop_at]).values()):
            assert torch.equal(a, b), kind
        spans = [span for _, span in calls]
        assert spans[0] == (0, tile * early_exit.FIRST_TILES) and spans[-1][1] <= len(table)
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))  # consecutive, no row twice
        sizes = [size for size, _ in calls]
        assert sizes == sorted(sizes, reverse=True)
        work = sum(size * (span[1] - span[0]) for size, span in calls)  # (user, item) pairs scored
        assert work <= len(target) * len(table)
        if kind == "random" and stop_at <= 5:
            assert work < len(target) * len(table), calls  # users did leave


def test_count_workers_leave_torch_threads_alone_and_raise_errors():
    from adapter4rec.ranking import run_workers

    before = torch.get_num_threads()
    seen = []
    run_workers(lambda w: seen.append((w, torch.get_num_threads())), 3, single_threaded_ops=True)
    assert sorted(seen) == [(0, 1), (1, 1), (2, 1)] and torch.get_num_threads() == before

    def fails(w):
        if w == 1:
            raise ValueError("worker 1")
    with pytest.raises(ValueError, match="worker 1"):
        run_workers(fails, 2, single_threaded_ops=True)
    assert torch.get_num_threads() == before
    # elsewhere (a GPU) one worker, in this thread, ops as they are
    seen.clear()
    run_workers(lambda w: seen.append((w, torch.get_num_threads())), 1, single_threaded_ops=False)
    assert seen == [(0, before)]


@pytest.mark.parametrize("candidates", ["all", "interacted"])
def test_embeddings_path_is_exact_under_any_blocking(candidates, monkeypatch):
    """evaluate_embeddings against full float64 rows (`evaluate`), history masked, with ties (dyadic embeddings,
    duplicated items) and items no user interacted with; then the same numbers, bit for bit, whatever the item
    chunk, the users per pass / per product, the tile or the thread count."""
    import adapter4rec.evaluate as ev
    from adapter4rec.ranking import tiles

    rng = np.random.default_rng(5)
    n_items, n_users, d = 90, 70, 5
    seqs = [rng.choice(np.arange(1, 61), size=int(rng.integers(3, 14))) for _ in range(n_users)]  # 61..90 unused
    split = leave_one_out(Interactions([str(i) for i in range(n_users)], seqs, n_items, {}), 6, "skip",
                          candidates=candidates).test
    table = torch.from_numpy(rng.integers(-3, 4, size=(n_items + 1, d)) / 8.0).float()
    table[31:46] = table[1:16]  # duplicated items
    table[61:] = 2.0  # the unused items would win every ranking if they were ranked
    users = torch.from_numpy(rng.integers(-3, 4, size=(n_items + 1, d)) / 8.0).float()
    user_fn = lambda h: users[h[:, -1]]  # noqa: E731
    ks = [1, 5, 10, 20]
    want = ev.evaluate(lambda h: user_fn(h).double() @ table.double().T, split, ks, 8, torch.device("cpu"))
    base = ev.evaluate_embeddings(user_fn, table, split, ks, 8, torch.device("cpu"))
    assert base == pytest.approx(want, abs=1e-12)
    assert 0 < base["hr@1"] < base["hr@20"] < 1
    threads_before = torch.get_num_threads()
    for block, group, tile, item_chunk, threads in ((8, 3, 7, 65536, 2), (16, 128, 1024, 7, 1), (24, 5, 64, 10, 3),
                                                     (4096, 1, 1, 1, 2)):
        monkeypatch.setattr(ev, "_BLOCK_USERS", block)
        monkeypatch.setattr(tiles, "GROUP", group)
        monkeypatch.setattr(tiles, "TILE", tile)
        torch.set_num_threads(threads)  # the default number of counting workers
        try:
            got = ev.evaluate_embeddings(user_fn, table, split, ks, 8, torch.device("cpu"), item_chunk)
            assert torch.get_num_threads() == threads
        finally:
            torch.set_num_threads(threads_before)
        assert got == base, (block, group, tile, item_chunk, threads)


def test_user_encoder_sees_the_same_batches_as_before():
    """Counting several batches per pass must not change what the user encoder is given: batch_size rows at a
    time, in order (an encoder's output may depend on its batch)."""
    from adapter4rec.evaluate import evaluate_embeddings

    rng = np.random.default_rng(2)
    seqs = [rng.choice(np.arange(1, 41), size=int(rng.integers(3, 9))) for _ in range(50)]
    split = leave_one_out(Interactions([str(i) for i in range(50)], seqs, 40, {}), 4, "no_mask").test
    table = torch.from_numpy(rng.normal(size=(41, 3))).float()
    calls = []

    def user_fn(h):
        calls.append(h.clone())
        return torch.ones(h.shape[0], 3)
    evaluate_embeddings(user_fn, table, split, [5], 7, torch.device("cpu"))
    assert [len(c) for c in calls] == [7] * 7 + [1]
    assert torch.equal(torch.cat(calls), split.history)


@pytest.mark.parametrize("n_users", [1, 17])
def test_a_lone_user_ties_too(n_users, monkeypatch):
    """A block of one user (here the only one, or the last of 17 with batches of 8 and 16 users per pass): a
    1-row product is a matrix-vector product in MKL, whose columns do not all round alike, so the counting
    never multiplies fewer than 2 users at once. A collapsed model must stay at chance level."""
    import adapter4rec.evaluate as ev

    n_items, d = 300, 64
    gen = torch.Generator().manual_seed(4)
    table = (0.1 * torch.randn(1, d, generator=gen)).expand(n_items + 1, d).clone()
    users = 0.1 * torch.randn(n_items + 1, d, generator=gen)
    seqs = [np.array([1 + (7 * u + j) % n_items for j in range(4)]) for u in range(n_users)]
    split = leave_one_out(Interactions([str(i) for i in range(n_users)], seqs, n_items, {}), 5, "no_mask").test
    monkeypatch.setattr(ev, "_BLOCK_USERS", 16)
    for item_chunk in (5, 64, 65536):
        res = ev.evaluate_embeddings(lambda h: users[h[:, -1]], table, split, [10], 8, torch.device("cpu"),
                                     item_chunk)
        assert res["hr@10"] == pytest.approx(10 / n_items, abs=1e-12), item_chunk


# ---------------------------------------------------------------------------------------------- non-finite scores
def _nonfinite_case():
    """Three test users (no masking, every item ranked): u0 finite (target 3 below item 1 only: rank 1), u1 a NaN
    user vector, u2 a finite vector whose fp32 product with its target overflows to +inf (the target the only
    such item: with NaN / inf read as a rank, both would be perfect). Item 7 is a NaN row: a competitor of
    every user, ranked above its target (it may lower the metrics, never raise them)."""
    seqs = [np.array([1, 2, 3]), np.array([2, 4, 5]), np.array([3, 6, 1])]
    split = leave_one_out(Interactions(["u0", "u1", "u2"], seqs, 7, {}), 3, "no_mask", candidates="all").test
    table = torch.tensor([[0.0, 0.0], [2.0, 0.0], [-1.0, 1.0], [0.5, 0.0], [-2.0, 0.0], [-1.0, -1.0], [0.25, 0.0],
                          [math.nan, math.nan]])
    vectors = torch.zeros(8, 2)
    vectors[2] = torch.tensor([1.0, 0.0])       # u0's last history item
    vectors[4] = math.nan                        # u1's
    vectors[6] = torch.tensor([3e38, 0.0])      # u2's: 3e38 x 2 = inf in fp32, its other products stay finite
    return split, table, lambda h: vectors[h[:, -1]]


def test_nonfinite_target_scores_rank_last_and_are_counted():
    from adapter4rec.evaluate import evaluate_embeddings

    split, table, user_fn = _nonfinite_case()
    ks = [1, 2, 10]
    # u0 alone keeps its exact metrics (rank 2, below item 1 and the NaN item 7: hr@2 0, hr@10 1, ndcg@10
    # 1/log2(4), mrr@10 1/3), divided by 3 users
    want = {"hr@1": 0.0, "hr@2": 0.0, "hr@10": 1 / 3, "ndcg@1": 0.0, "ndcg@2": 0.0, "ndcg@10": lg(4) / 3,
            "mrr@1": 0.0, "mrr@2": 0.0, "mrr@10": 1 / 9}
    for got in (evaluate_embeddings(user_fn, table, split, ks, 2, torch.device("cpu")),
                evaluate(lambda h: user_fn(h) @ table.T, split, ks, 2, torch.device("cpu"))):
        assert {k: got[k] for k in want} == pytest.approx(want, abs=1e-12)
        assert got["users"] == 3 and got["nonfinite_users"] == 2 and got["nonfinite_items"] == 1


def test_a_nonfinite_target_gets_zero_for_every_k_and_a_nan_competitor_is_above():
    scores = torch.tensor([[math.nan, 1.0, 2.0, math.nan],   # target 1: one item and two NaN competitors above
                           [math.nan, math.nan, math.nan, math.nan],
                           [1.0, math.inf, 2.0, 0.0],
                           [1.0, -math.inf, 2.0, 0.0]])
    out = rank_metrics(scores, torch.tensor([1, 1, 1, 1]), [1, 2, 4])
    assert out["hr@2"].tolist() == [0.0, 0.0, 0.0, 0.0] and out["hr@4"].tolist() == [1.0, 0.0, 0.0, 0.0]
    for name in ("hr@4", "ndcg@4", "mrr@4"):
        assert out[name][1:].tolist() == [0.0, 0.0, 0.0], name
    assert out["nonfinite"].tolist() == [0.0, 1.0, 1.0, 1.0]


def test_a_split_without_users_gives_nan_not_zero():
    from adapter4rec.data.split import eval_split_of
    from adapter4rec.evaluate import evaluate_embeddings

    empty = eval_split_of([], [], [], 3, True)
    table = torch.ones(4, 2)
    for got in (evaluate(lambda h: torch.ones(len(h), 4), empty, [1, 5], 8, torch.device("cpu")),
                evaluate_embeddings(lambda h: torch.ones(len(h), 2), table, empty, [1, 5], 8, torch.device("cpu"))):
        assert all(math.isnan(got[f"{m}@{k}"]) for m in ("hr", "ndcg", "mrr") for k in (1, 5)), got
        assert got["users"] == 0 and got["nonfinite_users"] == 0


@pytest.mark.parametrize("lines,split", [("u1\ti1 i2 i3 i1\nu2\ti2 i3 i1 i3\n", "test"),
                                         ("u1\ti1 i2 i1 i2\nu2\ti3 i2 i3 i2\n", "validation")])
def test_a_split_left_without_users_is_refused_at_load(tmp_path, lines, split):
    """eval_repeats=skip leaves out every user whose target repeats a history item: with none left, every metric
    would be a mean over no users, so loading the data refuses it and says why."""
    from adapter4rec.config import Config
    from adapter4rec.data.files import DataError
    from adapter4rec.training.build import load_data

    (tmp_path / "items.tsv").write_text("i1\tOne\ni2\tTwo\ni3\tThree\n")
    (tmp_path / "users.tsv").write_text(lines)
    with pytest.raises(DataError) as err:
        load_data(Config(dataset=str(tmp_path), min_seq_len=3).validate())
    msg = str(err.value)
    assert str(tmp_path / "users.tsv") in msg and f"no {split} user left" in msg and "2 users kept" in msg
    assert "2 have a" in msg and "eval_repeats=skip" in msg and "eval_repeats=no_mask" in msg
    load_data(Config(dataset=str(tmp_path), min_seq_len=3, eval_repeats="no_mask").validate())  # what it says works


def _nan_case(candidates=None):
    """200 users, 300 items; targets among items 1..150; every user's history holds item 160 (masked)."""
    from adapter4rec.data.split import eval_split_of
    g = torch.Generator().manual_seed(3)
    table = torch.randn(301, 8, generator=g)
    table[0] = 0
    vectors = torch.randn(200, 8, generator=g)
    targets = torch.randint(1, 151, (200,), generator=g)
    split = eval_split_of(list(range(200)), [np.array([160, 1 + i % 7]) for i in range(200)], targets.tolist(), 4,
                          True, candidates=candidates)
    return table, vectors, split


def _embedding_metrics(table, vectors, split):
    from adapter4rec.evaluate import evaluate_embeddings
    position = {"at": 0}

    def users(history):
        rows = vectors[position["at"]:position["at"] + len(history)]
        position["at"] += len(history)
        return rows
    return evaluate_embeddings(users, table, split, [5, 10], 1000, torch.device("cpu"))


def test_nonfinite_items_rank_above_every_target_and_are_counted():
    # an item table with NaN rows that are nobody's target must not raise the metrics by leaving the ranking
    table, vectors, split = _nan_case()
    clean = _embedding_metrics(table, vectors, split)
    assert clean["nonfinite_items"] == 0 and clean["hr@10"] > 0
    bad = table.clone()
    bad[151:] = math.nan  # half the catalogue, the masked item 160 among them
    assert _embedding_metrics(bad, vectors, split)["hr@10"] == 0.0  # 149 unmasked NaN rows above every target
    few = table.clone()
    few[[155, 160, 170, 180]] = math.nan  # 160 is in every history (masked): it counts for nobody
    got = _embedding_metrics(few, vectors, split)
    assert got["nonfinite_items"] == 4 and got["nonfinite_users"] == 0
    # the reference: dense scores, masked items at -inf, NaN columns counted above (rank_metrics)
    scores = vectors @ few.T
    scores[:, 0] = -math.inf
    which, seen = split.seen_ptr, split.seen_items
    for u in range(200):
        scores[u, seen[which[u]:which[u + 1]]] = -math.inf
    want = rank_metrics(scores, split.target, [5, 10])
    for key in ("hr@5", "hr@10", "ndcg@10"):
        assert got[key] == pytest.approx(float(want[key].mean()), abs=1e-12), key
    assert got["hr@10"] < clean["hr@10"]


def test_a_nonfinite_target_row_makes_its_user_nonfinite_also_among_candidates():
    table, vectors, split = _nan_case(candidates=torch.cat([torch.tensor([False]), torch.ones(300, dtype=torch.bool)]))
    candidates = torch.ones(301, dtype=torch.bool)
    candidates[0], candidates[250:] = False, False  # items 250.. are no candidate: their NaN counts for nobody
    split = dataclasses.replace(split, candidates=candidates)
    bad = table.clone()
    target = int(split.target[0])
    bad[[target, 260]] = math.nan
    got = _embedding_metrics(bad, vectors, split)
    hit = split.target == target
    assert got["nonfinite_users"] == int(hit.sum()) and got["nonfinite_items"] == 1
    clean = _embedding_metrics(table, vectors, split)
    assert got["hr@10"] <= clean["hr@10"]
