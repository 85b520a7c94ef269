"""A source pool (several datasets in one run) and the training candidates of every loss: a pool's user competes
with its own domain's items only (unless mixed negatives are chosen), an item held out as cold with none; ids of
two domains never collide; the smoothed domain mix; per-domain metrics; a pool run end to end, resumed exactly,
and its side network handed to a target run (zero-shot and trained)."""
from __future__ import annotations

import json

import pytest
import torch

import adapter4rec.training.train as train
from adapter4rec.checkpoint import CheckpointError, read_checkpoint
from adapter4rec.config import parse_args
from adapter4rec.data.pool import domain_weights, read_pool
from adapter4rec.data.split import Domains, eval_split_of
from adapter4rec.evaluate import by_domain, evaluate_embeddings
from adapter4rec.models.item_encoders import IdItemEncoder
from adapter4rec.models.negatives import sample_negatives, training_groups
from adapter4rec.models.recommender import Recommender
from adapter4rec.models.user_encoder import SASRecEncoder
from tests.conftest import tiny_args


def write_domain(folder, items, users):
    folder.mkdir(parents=True)
    (folder / "items.tsv").write_text("".join(f"{i}\ttitle {i} of {folder.name}\n" for i in items))
    (folder / "users.tsv").write_text("".join(f"{u}\t{' '.join(seq)}\n" for u, seq in users.items()))
    return folder


def test_two_domains_with_the_same_raw_ids_stay_apart(tmp_path):
    a = write_domain(tmp_path / "A", ["x", "y", "z"], {"u1": ["x", "y", "z"], "u2": ["z", "y", "x"]})
    b = write_domain(tmp_path / "B", ["x", "y", "w", "v"], {"u1": ["x", "w", "v", "y"]})
    catalog, users, domains = read_pool([a, b], "items.tsv", "users.tsv", 3, "error")
    assert catalog.ids == ["A/x", "A/y", "A/z", "B/x", "B/y", "B/w", "B/v"]
    assert users.user_ids == ["A/u1", "A/u2", "B/u1"]
    assert domains.bounds == [0, 3, 7]
    assert [s.tolist() for s in users.sequences] == [[1, 2, 3], [3, 2, 1], [4, 6, 7, 5]]
    assert domains.of_items(torch.tensor([1, 3, 4, 7])).tolist() == [0, 0, 1, 1]
    # the target's items are left out of every domain, counted, and their interactions dropped
    target = tmp_path / "target_items.tsv"
    target.write_text("y\tshared\n")
    catalog, users, domains = read_pool([a, b], "items.tsv", "users.tsv", 2, "error", exclude=target)
    assert "A/y" not in catalog.index and "B/y" not in catalog.index
    assert users.stats["items_excluded"] == 2 and users.stats["unknown_items_dropped"] == 3
    assert domains.bounds == [0, 2, 5]


def id_model(groups, loss, negatives=0, num_items=10, dim=8):
    torch.manual_seed(0)
    return Recommender(IdItemEncoder(num_items, dim), SASRecEncoder(dim, 4, 1, 1, 0.0), loss=loss,
                       softmax_negatives=negatives, candidate_groups=groups)


WINDOWS = torch.tensor([[0, 1, 2, 3, 4], [0, 0, 2, 4, 1]])  # domain 0 (items 1-5) only


@pytest.mark.parametrize("loss,negatives", [("bce", 0), ("softmax", 0), ("softmax", 30)])
@pytest.mark.parametrize("why", ["other domain", "cold"])
def test_no_loss_reaches_items_outside_the_targets_group(loss, negatives, why):
    domains = Domains(["a", "b"], [0, 5, 10])
    cold = torch.zeros(11, dtype=torch.bool)
    cold[[3, 5]] = True  # item 3 is in the windows: held out items are removed from them before training
    windows = WINDOWS.masked_fill(WINDOWS == 3, 0) if why == "cold" else WINDOWS
    outside = torch.arange(6, 11) if why == "other domain" else torch.tensor([3, 5])
    for groups, reached in ((training_groups(10, domains if why == "other domain" else None,
                                             cold if why == "cold" else None), False), (None, True)):
        model = id_model(groups, loss, negatives)
        gen = torch.Generator().manual_seed(1)
        negs = model.draw_negatives(windows, gen)
        model(windows, negs).backward()
        grad = model.item_encoder.embedding.weight.grad[outside].abs().sum()
        # without the groups the same loss does reach them: the check can fail
        assert bool(grad > 0) == reached, (groups, float(grad))
        if loss == "bce" and groups is not None:
            assert not bool(torch.isin(negs[windows[:, 1:] > 0], outside).any())


@pytest.mark.parametrize("negatives", [0, 6])
def test_in_batch_candidates_of_a_mixed_batch_are_each_rows_own_domain(negatives):
    """A batch of two domains' windows: with the groups, each row's softmax (no correction, so the candidate set
    alone decides) is what the row's own domain's windows would give alone; without, another domain's items count."""
    groups = training_groups(10, Domains(["a", "b"], [0, 5, 10]))
    mixed = torch.tensor([[0, 1, 2, 3, 4], [0, 6, 7, 8, 9], [0, 0, 2, 4, 1]])
    loss = "inbatch" if negatives == 0 else "softmax"

    def loss_of(windows, groups, shared=None):
        model = id_model(groups, loss, negatives)
        model.inbatch_correction = "none"
        return model(windows, shared)
    shared = torch.tensor([5, 10, 7, 2, 3, 6]) if negatives else None
    own = lambda rows: None if shared is None else shared[(shared <= 5) == (rows == "a")]  # noqa: E731
    # loss positions (input and target real): 3 + 2 in domain a's windows, 3 in b's
    alone = (loss_of(mixed[[0, 2]], groups, own("a")) * 5 + loss_of(mixed[[1]], groups, own("b")) * 3) / 8
    assert torch.allclose(loss_of(mixed, groups, shared), alone)
    assert not torch.allclose(loss_of(mixed, None, shared), alone)


def test_mixed_negatives_compare_with_every_domain():
    domains = Domains(["a", "b"], [0, 5, 10])
    assert training_groups(10, domains, mixed=True) is None
    model = id_model(training_groups(10, domains, mixed=True), "softmax")
    model(WINDOWS).backward()
    assert model.item_encoder.embedding.weight.grad[6:].abs().sum() > 0


def test_bce_negatives_are_uniform_within_the_group():
    groups = training_groups(9, Domains(["a", "b"], [0, 3, 9]))
    seqs = torch.tensor([[0, 1, 1]] * 4000 + [[0, 4, 4]] * 4000)
    negs = sample_negatives(seqs, 9, torch.Generator().manual_seed(0), groups)
    first, second = negs[:4000].flatten(), negs[4000:].flatten()
    assert set(first.tolist()) == {2, 3} and set(second.tolist()) == {5, 6, 7, 8, 9}
    counts = torch.bincount(second, minlength=10)[5:].float() / len(second)
    assert torch.allclose(counts, torch.full((5,), 0.2), atol=0.02)


def test_smoothed_domain_mix_has_the_stated_proportions():
    domains = Domains(["big", "small"], [0, 10, 20])
    windows = torch.cat([torch.full((900, 3), 5), torch.full((100, 3), 15)])
    weights, share = domain_weights(windows, domains, 0.5)
    assert share == pytest.approx([30 / 40, 10 / 40])
    drawn = torch.multinomial(weights, 40000, replacement=True, generator=torch.Generator().manual_seed(0))
    assert float((drawn >= 900).float().mean()) == pytest.approx(0.25, abs=0.01)
    _, proportional = domain_weights(windows, domains, 1.0)
    assert proportional == pytest.approx([0.9, 0.1])


def test_each_domain_is_ranked_against_its_own_items():
    domains = Domains(["a", "b"], [0, 3, 6])
    # every user vector is [1]; items of domain a score 10..12, domain b 1..3: a user of b would miss its target
    # among a's items if they were candidates
    table = torch.tensor([[0.0], [10.0], [11.0], [12.0], [1.0], [2.0], [3.0]])
    split = eval_split_of([0, 1], [torch.tensor([1]).numpy(), torch.tensor([4]).numpy()], [3, 6], 2, False)
    split.domains = domains
    users = lambda history: torch.ones(len(history), 1)  # noqa: E731

    def one(part):
        return evaluate_embeddings(users, table, part, [1], 8, torch.device("cpu"))
    result = by_domain(split, one)
    assert result["domains"]["a"]["hr@1"] == 1.0 and result["domains"]["b"]["hr@1"] == 1.0
    assert result["hr@1"] == 1.0 and result["users"] == 2
    split.domains = None
    assert by_domain(split, one)["hr@1"] == 0.5  # one catalogue: b's target is below a's items


def pool_args(tiny_bert, tiny_data, out, **extra):
    base = dict(tune="peft", adapter="side",
                adapter_where="item", train_head="true", train_user_encoder="true", loss="softmax",
                softmax_negatives=8, domain_sampling="smoothed", epochs=2, max_steps_per_epoch=6,
                save_every_steps=2, precision="fp32", run_name="pool")
    base.update(extra)
    return tiny_args(tiny_bert, f"{tiny_data / 'source'},{tiny_data / 'target'}", out, **base)


def test_pool_run_reports_every_domain_and_resumes_exactly(tiny_bert, tiny_data, tmp_path, monkeypatch):
    straight = train.run(parse_args(pool_args(tiny_bert, tiny_data, tmp_path / "a")))
    assert set(straight["test"]["domains"]) == {"source", "target"}
    means = [straight["test"]["domains"][d]["ndcg@10"] for d in ("source", "target")]
    assert straight["test"]["ndcg@10"] == pytest.approx(sum(means) / 2)
    epochs = [json.loads(line) for line in (tmp_path / "a" / "pool" / "metrics.jsonl").read_text().splitlines()]
    assert set(epochs[0]["domains"]) == {"source", "target"}
    saves, real_save = [], train.save_last

    def crash_after_save(*a, **k):
        real_save(*a, **k)
        saves.append(1)
        if len(saves) == 4:
            raise KeyboardInterrupt("simulated kill")
    monkeypatch.setattr(train, "save_last", crash_after_save)
    with pytest.raises(KeyboardInterrupt):
        train.run(parse_args(pool_args(tiny_bert, tiny_data, tmp_path / "b")))
    monkeypatch.setattr(train, "save_last", real_save)
    resumed = train.run(parse_args(pool_args(tiny_bert, tiny_data, tmp_path / "b")))
    assert resumed["test"] == straight["test"]


def test_a_pool_sources_side_network_reaches_the_target(tiny_bert, tiny_data, tmp_path):
    train.run(parse_args(pool_args(tiny_bert, tiny_data, tmp_path, max_steps_per_epoch=3)))
    source = tmp_path / "pool" / "best.pt"
    side = {k: v for k, v in read_checkpoint(source)["model"].items() if k.startswith("item_encoder.side.")}
    assert side["item_encoder.side.up.weight"].abs().sum() > 0  # trained (zero at init)
    target = dict(stage="downstream", source_checkpoint=str(source), tune="peft", adapter="side",
                  adapter_where="item", train_head="true", train_user_encoder="true", loss="softmax",
                  precision="fp32")
    zero = train.run(parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, run_name="zero",
                                          zero_shot="true", **target)))
    assert zero["trainable_params"] == 0
    # the zero-shot model is the pool model: its target-domain test metrics are the pool run's on that domain
    pool = json.loads((tmp_path / "pool" / "results.json").read_text())
    assert zero["test_no_mask"]["ndcg@10"] == pytest.approx(pool["test_no_mask"]["domains"]["target"]["ndcg@10"])
    with pytest.raises(CheckpointError, match="scores otherwise: source score='dot', this run score='cosine'"):
        train.run(parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, run_name="zero-cosine",
                                       zero_shot="true", score="cosine", **target)))
    with pytest.raises(CheckpointError, match="source adapter='side', this run adapter='none'"):
        train.run(parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, run_name="zero-none",
                                       zero_shot="true", **dict(target, adapter="none"))))
