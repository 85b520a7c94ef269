"""Recommender: distinct-item encoding equals per-slot encoding (values and gradients), cpc/inbatch losses, the
popularity of the sampling corrections (counted over the training windows)."""
from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F

from adapter4rec.config import parse_args
from adapter4rec.models.negatives import sample_negatives
from adapter4rec.models.recommender import Recommender
from adapter4rec.training.build import build_model, load_data
from tests.conftest import tiny_args


@pytest.fixture(scope="module")
def rec(tiny_bert, tiny_data, tmp_path_factory):
    # dropout 0 in the user encoder and eval() for BERT: the comparisons below are deterministic.
    # float64 so that batch-composition effects in BERT stay far below the tolerances.
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path_factory.mktemp("rec"), dropout=0.0))
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data).double().eval()
    return model, data


def _batch(data, n=6):
    seqs = data.split.train[:n]
    assert (seqs == 0).any(), "the batch should contain left padding"
    return seqs, sample_negatives(seqs, len(data.catalog), torch.Generator().manual_seed(0))


def _per_slot(model, ids: torch.Tensor) -> torch.Tensor:
    """Reference: encode every slot (duplicates included), padding slots as zero vectors."""
    flat = ids.reshape(-1)
    real = (flat > 0).nonzero().squeeze(1)
    emb = model.item_encoder(flat[real])
    out = emb.new_zeros(len(flat), emb.shape[1]).index_copy(0, real, emb)
    return out.view(*ids.shape, -1)


def test_encode_distinct_matches_per_slot(rec):
    model, _ = rec
    ids = torch.tensor([[0, 0, 3, 5, 3], [0, 7, 5, 1, 2]])
    with torch.no_grad():
        table, inverse, distinct = model.encode_distinct(ids)
        assert distinct.tolist() == [1, 2, 3, 5, 7]
        assert table.shape == (6, 16) and torch.equal(table[0], torch.zeros(16, dtype=table.dtype))
        torch.testing.assert_close(table[inverse], _per_slot(model, ids), rtol=1e-9, atol=1e-10)
        # one by one, without any batching at all
        for r in range(2):
            for c in range(5):
                i = int(ids[r, c])
                want = torch.zeros(16, dtype=table.dtype) if i == 0 else model.item_encoder(torch.tensor([i]))[0]
                torch.testing.assert_close(table[inverse][r, c], want, rtol=1e-9, atol=1e-10)
        # no padding in the input: inverse must still point past the zero row
        ids = torch.tensor([[4, 2, 4]])
        table, inverse, _ = model.encode_distinct(ids)
        torch.testing.assert_close(table[inverse], _per_slot(model, ids), rtol=1e-9, atol=1e-10)


def _reference_bce(model, seqs, negatives):
    """The loss of the original code: every slot encoded, same user encoder, same masks."""
    inputs, targets = seqs[:, :-1], seqs[:, 1:]
    mask = (inputs > 0) & (targets > 0)
    if model.arch == "cpc":
        mask = mask & (torch.arange(mask.shape[1]) == mask.shape[1] - 1)
    states = model.user_encoder(_per_slot(model, inputs), inputs > 0)
    pos = (states * _per_slot(model, targets)).sum(-1)[mask]
    neg = (states * _per_slot(model, negatives)).sum(-1)[mask]
    pos, neg = pos.float(), neg.float()  # the model takes the loss in float32 as well
    return (F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
            + F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg)))


def _grads(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_bce_loss_and_gradients_match_per_slot_reference(rec):
    model, data = rec
    seqs, negatives = _batch(data)
    loss = model(seqs, negatives)
    want_loss = _reference_bce(model, seqs, negatives)
    torch.testing.assert_close(loss, want_loss, rtol=1e-6, atol=1e-8)
    got, want = _grads(model, loss), _grads(model, want_loss)
    assert set(got) == set(want)
    assert any(n.startswith("item_encoder.backbone.") for n in got)  # gradients reach BERT
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-9, msg=name)
    assert any(want[n].abs().sum() > 0 for n in want if n.startswith("item_encoder.backbone.encoder"))


def _cpc(model):
    return Recommender(model.item_encoder, model.user_encoder, arch="cpc", loss="bce").double().eval()


def test_cpc_uses_only_the_last_position(rec):
    model, data = rec
    cpc = _cpc(model)
    seqs, negatives = _batch(data)
    other = negatives.clone()
    real = seqs[:, 1:-1] > 0  # earlier positions that carry a loss under sasrec
    other[:, :-1][real] = (negatives[:, :-1][real] % cpc.num_items) + 1  # a different negative there
    last = negatives.clone()
    last[:, -1] = (negatives[:, -1] % cpc.num_items) + 1
    # The untrained tiny BERT gives near-identical item embeddings, so a changed negative moves the float32
    # loss (~3.35, one ulp ~2.4e-7) by only ~1e-5: "unchanged" is < 5e-7, "changed" is > 5e-6.
    with torch.no_grad():
        base = cpc(seqs, negatives).item()
        assert abs(cpc(seqs, other).item() - base) < 5e-7
        torch.testing.assert_close(cpc(seqs, negatives), _reference_bce(cpc, seqs, negatives), rtol=1e-6, atol=1e-8)
        # controls: cpc sees the last negative; the sasrec loss sees the earlier ones
        assert abs(cpc(seqs, last).item() - base) > 5e-6
        assert abs(model(seqs, other).item() - model(seqs, negatives).item()) > 5e-6


def _reference_inbatch(model, seqs, correction):
    """Softmax over the batch's distinct items, corrected for how they were drawn (written out per candidate),
    the user's other window items masked."""
    distinct = torch.unique(seqs[seqs > 0])
    cand = model.item_encoder(distinct)
    slots = int((seqs > 0).sum())
    p = model.log_popularity[distinct].exp()
    count = torch.tensor([float((seqs == i).sum()) for i in distinct.tolist()], dtype=p.dtype)
    shift = {"multiplicity": torch.log(count / (slots * p)), "inclusion": -torch.log(1 - (1 - p) ** slots),
             "popularity": -torch.log(p), "none": torch.zeros_like(p)}[correction]
    inputs = seqs[:, :-1]
    states = model.user_encoder(_per_slot(model, inputs), inputs > 0)
    losses = []
    for b in range(seqs.shape[0]):
        window = set(seqs[b][seqs[b] > 0].tolist())
        for t in range(inputs.shape[1]):
            target = int(seqs[b, t + 1])
            if inputs[b, t] == 0 or target == 0 or (model.arch == "cpc" and t != inputs.shape[1] - 1):
                continue
            logits = cand @ states[b, t] + shift
            masked = torch.tensor([i in window and i != target for i in distinct.tolist()])
            logits = logits.masked_fill(masked, torch.finfo(logits.dtype).min)
            losses.append(F.cross_entropy(logits[None], (distinct == target).nonzero()[0]))
    return torch.stack(losses).mean()


@pytest.mark.parametrize("correction", ["multiplicity", "inclusion", "popularity", "none"])
def test_inbatch_loss_matches_reference(rec, correction):
    model, data = rec
    inbatch = Recommender(model.item_encoder, model.user_encoder, loss="inbatch",
                          window_counts=data.split.window_counts, inbatch_correction=correction).double().eval()
    seqs = data.split.train[:5]
    with torch.no_grad():
        torch.testing.assert_close(inbatch(seqs), _reference_inbatch(inbatch, seqs, correction), rtol=1e-7, atol=1e-9)


def test_inbatch_loss_finite_and_decreases(rec):
    model, data = rec
    trained = copy.deepcopy(model).float()  # eval(): no dropout noise, the same batch gives the same loss
    inbatch = Recommender(trained.item_encoder, trained.user_encoder, loss="inbatch",
                          window_counts=data.split.window_counts).eval()
    seqs = data.split.train[:6]
    opt = torch.optim.Adam(inbatch.parameters(), lr=3e-3)
    losses = []
    for _ in range(4):
        loss = inbatch(seqs)
        assert torch.isfinite(loss)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 0.05, losses


def test_item_table_row_zero_and_chunking(rec):
    model, _ = rec
    table = model.item_table(chunk=512)
    assert table.shape == (model.num_items + 1, 16)
    assert torch.equal(table[0], torch.zeros(16, dtype=table.dtype))
    torch.testing.assert_close(table, model.item_table(chunk=50), rtol=1e-9, atol=1e-10)
    with torch.no_grad():
        torch.testing.assert_close(table[[3, 9]], model.item_encoder(torch.tensor([3, 9])).float())
    # user_states from the table equals user_states from encode_distinct
    history = torch.tensor([[0, 0, 0, 5, 6, 7, 8, 9], [1, 2, 3, 4, 5, 6, 7, 8]])
    with torch.no_grad():
        torch.testing.assert_close(model.user_states_from_table(history, table).double(),
                                   model.user_states(history).double(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_log_popularity_counts_the_training_windows(tiny_bert, tiny_data, tmp_path, fraction):
    # L = 3: most users have more than L+1 training items, and train_windows=last keeps only the newest L+1, so the
    # items the batches draw (every non-padding slot of a window: M = (seqs > 0).sum() in the losses) are not
    # all training interactions (item_counts, which stays the popularity baseline's count)
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, max_seq_len=3, train_windows="last",
                               loss="inbatch", user_fraction=fraction))
    data = load_data(cfg)
    windows = data.split.train  # under user_fraction: the trained share's windows only
    drawn = torch.bincount(windows[windows > 0], minlength=len(data.catalog) + 1)
    assert torch.equal(data.split.window_counts, drawn)
    assert int(drawn.sum()) < int(data.split.item_counts.sum())
    smoothed = drawn.double() + 1
    want = torch.log(smoothed / smoothed[1:].sum())
    model = build_model(cfg, data)
    torch.testing.assert_close(model.log_popularity.double()[1:], want[1:])
    interactions = data.split.item_counts.double() + 1
    assert (model.log_popularity.double()[1:] - torch.log(interactions / interactions[1:].sum())[1:]).abs().max() > 0.1
