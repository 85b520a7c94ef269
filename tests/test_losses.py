"""Losses: the sampling corrections recover log-popularity with free logits (the in-batch defect shown), the
catalogue and sampled softmax against per-position references, cosine scoring (fp32 logits under autocast, the
learned temperature's cap), the reduction over positions, the learning-rate schedule."""
from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from adapter4rec.config import parse_args
from adapter4rec.models.losses import MAX_LOG_SCALE, Scorer, bce_loss, candidate_softmax, correction, rank_denominator
from adapter4rec.models.negatives import sample_negatives
from adapter4rec.training.build import build_model, load_data
from adapter4rec.training.optim import schedule_factor
from adapter4rec.training.train import train_step
from tests.conftest import tiny_args


def _free_logits(kind: str, batch: int, log_q: torch.Tensor | None = None, n: int = 30, steps: int = 300,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Learn one free logit per item from batches of `batch` targets drawn from a Zipf popularity p, with the
    production loss over the batch's distinct items, its correction told the log-popularity `log_q` (default
    log p, the distribution actually sampled). Returns (learned logits, log p), both centred.
    The full softmax optimum is logit = log p + const."""
    gen = torch.Generator().manual_seed(seed)
    p = 1.0 / torch.arange(1, n + 1).double()
    p /= p.sum()
    log_q = p.log() if log_q is None else log_q
    theta = torch.zeros(n, dtype=torch.double, requires_grad=True)
    opt = torch.optim.Adam([theta], lr=0.1)
    scorer, user = Scorer("dot"), torch.ones(batch, 1, dtype=torch.double)
    for _ in range(steps):
        targets = torch.multinomial(p, batch, replacement=True, generator=gen)
        distinct, label = torch.unique(targets, return_inverse=True)
        counts = torch.bincount(label, minlength=len(distinct))
        logits = scorer.pairwise(user, theta[distinct].unsqueeze(1)) + correction(kind, log_q[distinct], counts,
                                                                                  batch, 0, n)
        loss = candidate_softmax(logits, label, None)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return theta.detach() - theta.detach().mean(), p.log() - p.log().mean()


def _free_logit_slope(kind: str, batch: int) -> float:
    """The slope of the learned logits on log p (1 at the full softmax optimum)."""
    y, x = _free_logits(kind, batch)
    return float((x * y).sum() / (x * x).sum())


def test_corrections_recover_log_popularity_and_popularity_only_over_corrects():
    # measured (300 steps, lr 0.1): multiplicity 1.000 at both sizes (its batch gradient is exactly 0 at log p);
    # inclusion 0.99-1.00; popularity-only 1.25 at batch 16 and 1.91 at batch 256 (the IDvs.MoRec-style
    # correction of the distinct items over-corrects popular ones, more with larger batches)
    assert abs(_free_logit_slope("multiplicity", 64) - 1.0) < 0.02
    assert abs(_free_logit_slope("inclusion", 64) - 1.0) < 0.08
    small, large = _free_logit_slope("popularity", 16), _free_logit_slope("popularity", 256)
    assert large > 1.5 and large > small + 0.3, (small, large)


def test_correction_needs_the_popularity_that_was_sampled():
    # the corrected sampled softmax reaches the full softmax optimum (log p) only when told the distribution the
    # candidates were drawn from; told another one q (as when the popularity counted every training interaction
    # while the batches draw from the training windows), the logits learn log q instead
    n = 12
    p = 1.0 / torch.arange(1, n + 1).double()
    q = p * torch.linspace(0.5, 1.5, n, dtype=torch.double)  # popular items under-counted, rare ones over-counted
    log_q = (q / q.sum()).log()
    matched, target = _free_logits("multiplicity", 64, n=n, steps=150)
    told_q, _ = _free_logits("multiplicity", 64, log_q, n=n, steps=150)
    off = log_q - log_q.mean() - target  # up to 0.64 in magnitude
    assert (matched - target).abs().max() < 0.05
    assert (told_q - target - off).abs().max() < 0.05  # it learned log q, not log p


@pytest.fixture(scope="module")
def model_and_data(tiny_bert, tiny_data, tmp_path_factory):
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path_factory.mktemp("losses"), dropout=0.0))
    data = load_data(cfg)
    torch.manual_seed(0)
    return build_model(cfg, data).double().eval(), data


def _with(model, **attrs):
    for key, value in attrs.items():
        setattr(model, key, value)
    return model


def _reference(model, seqs, candidates, shift):
    """Per-position cross-entropy over `candidates` (ids) with logits state . item + shift, the window's other
    items masked; every slot encoded separately."""
    cand = model.item_encoder(candidates)
    inputs = seqs[:, :-1]
    emb = torch.stack([torch.stack([model.item_encoder(i.view(1))[0] if i > 0 else cand.new_zeros(cand.shape[1])
                                    for i in row]) for row in inputs])
    states = model.user_encoder(emb, inputs > 0)
    losses = []
    for b in range(seqs.shape[0]):
        window = set(seqs[b][seqs[b] > 0].tolist())
        for t in range(inputs.shape[1]):
            target = int(seqs[b, t + 1])
            if inputs[b, t] == 0 or target == 0:
                continue
            logits = model.scorer.pairwise(states[b, t].unsqueeze(0), cand)[0] + shift
            masked = torch.tensor([i in window and i != target for i in candidates.tolist()])
            logits = logits.masked_fill(masked, torch.finfo(logits.dtype).min)
            losses.append(F.cross_entropy(logits[None], (candidates == target).nonzero()[0]))
    return torch.stack(losses).mean()


def test_catalogue_softmax_matches_reference(model_and_data):
    model, data = model_and_data
    model = _with(model, loss_name="softmax", softmax_negatives=0)
    seqs = data.split.train[:4]
    everything = torch.arange(1, model.num_items + 1)
    with torch.no_grad():
        torch.testing.assert_close(model(seqs), _reference(model, seqs, everything, 0.0), rtol=1e-7, atol=1e-9)


@pytest.mark.parametrize("kind", ["multiplicity", "inclusion"])
def test_sampled_softmax_with_shared_negatives_matches_reference(model_and_data, kind):
    model, data = model_and_data
    model = _with(model, loss_name="softmax", softmax_negatives=7, inbatch_correction=kind)
    seqs, shared = data.split.train[:4], torch.tensor([3, 50, 50, 9, 120, 3, 77])
    candidates = torch.unique(torch.cat([seqs[seqs > 0], shared]))
    n, slots, draws = model.num_items, int((seqs > 0).sum()), len(shared)
    p = model.log_popularity[candidates].exp()
    counts = torch.tensor([float((seqs == i).sum() + (shared == i).sum()) for i in candidates.tolist()])
    if kind == "multiplicity":
        shift = torch.log(counts.double()) - torch.log(slots * p + draws / n)
    else:
        shift = -torch.log(1 - (1 - p) ** slots * (1 - 1 / n) ** draws)
    with torch.no_grad():
        torch.testing.assert_close(model(seqs, shared), _reference(model, seqs, candidates, shift), rtol=1e-7,
                                   atol=1e-9)
    _with(model, loss_name="bce", softmax_negatives=0, inbatch_correction="multiplicity")


def test_cosine_scorer_and_learned_temperature():
    u, v = torch.randn(3, 8), torch.randn(5, 8)
    fixed = Scorer("cosine", temperature=0.05)
    want = F.normalize(u, dim=-1) @ F.normalize(v, dim=-1).T / 0.05
    torch.testing.assert_close(fixed.pairwise(u, v), want)
    torch.testing.assert_close(fixed.paired(u[:2], v[:2]), want.diagonal()[:2])
    assert not list(fixed.parameters())  # a fixed temperature is not trained
    learned = Scorer("cosine", temperature=0.1, learn_temperature=True)
    (param,) = list(learned.parameters())
    learned.pairwise(u, v).sum().backward()
    assert param.grad is not None and param.grad.abs() > 0
    torch.testing.assert_close(Scorer("dot").pairwise(u, v), u @ v.T)


def test_logits_are_fp32_under_bf16_autocast():
    # autocast would run the matrix product of normalize's fp32 operands in bf16 (8-bit mantissa), measured on
    # these 16 x 500 logits: off by up to 0.09 (dot) / 0.065 (cosine / 0.05), and 19% / 21% of them tied with
    # another logit of their row (none in fp32)
    gen = torch.Generator().manual_seed(0)
    u, v = torch.randn(16, 32, generator=gen), torch.randn(500, 32, generator=gen)
    for scorer in (Scorer("dot"), Scorer("cosine", temperature=0.05)):
        want = scorer.pairwise(u, v)
        half = u.bfloat16().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            got, paired, from_half = scorer.pairwise(u, v), scorer.paired(u, v[:16]), scorer.pairwise(half, v)
        assert got.dtype == paired.dtype == from_half.dtype == torch.float32
        torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-6)
        torch.testing.assert_close(paired, want[:, :16].diagonal(), rtol=1e-6, atol=1e-6)
        ties = sum(len(row) - len(torch.unique(row)) for row in got)
        assert ties == 0
        from_half.sum().backward()  # gradients still reach a half-precision input
        assert half.grad.dtype == torch.bfloat16 and half.grad.abs().sum() > 0


def test_learned_temperature_comes_back_from_its_cap():
    u, v = torch.randn(4, 8), torch.randn(6, 8)
    scorer = Scorer("cosine", temperature=0.1, learn_temperature=True)
    (param,) = list(scorer.parameters())
    opt = torch.optim.SGD([param], lr=0.01)
    for start in (MAX_LOG_SCALE + 0.5, MAX_LOG_SCALE):  # above the cap (an old state), and at it
        with torch.no_grad():
            param.fill_(start)
        opt.zero_grad()
        scorer.pairwise(u, v).pow(2).mean().backward()  # a loss that wants smaller logits, so a smaller 1/tau
        assert param.grad > 0  # a clamp in the forward gave 0 here, for good
        opt.step()
        assert param.item() < start
    scorer.load_state_dict({"log_scale": torch.tensor(10.0)})  # a checkpoint holding 1/tau = e^10
    assert param.item() == pytest.approx(MAX_LOG_SCALE)
    assert Scorer("cosine", temperature=0.005).scale().item() == pytest.approx(200.0)  # a fixed one: as given
    with pytest.raises(ValueError, match="cap"):
        Scorer("cosine", temperature=0.005, learn_temperature=True)


class _PushUp(torch.optim.SGD):
    """An optimizer whose step moves every parameter up by 1, whatever the gradient."""

    @torch.no_grad()
    def step(self, closure=None):
        for group in self.param_groups:
            for p in group["params"]:
                p.add_(1.0)


def test_train_step_clamps_the_learned_temperature_after_the_step(model_and_data):
    model, data = model_and_data
    scorer = Scorer("cosine", temperature=0.0101, learn_temperature=True)  # 1/tau = 99: one step passes 100
    model = _with(model, scorer=scorer)
    try:
        seqs = data.split.train[:4]
        negs = sample_negatives(seqs, model.num_items, torch.Generator().manual_seed(0))
        loss, fault = train_step(model, model, seqs, negs, _PushUp([scorer.log_scale], lr=1.0),
                                 torch.amp.GradScaler("cpu", enabled=False), parse_args([]), torch.device("cpu"))
        assert fault is None
        assert scorer.log_scale.item() == pytest.approx(MAX_LOG_SCALE, abs=1e-6)
    finally:
        _with(model, scorer=Scorer("dot"))


def test_one_process_losses_are_the_plain_means():
    # without DDP nothing is all-reduced and the losses are F's own means, bit for bit (as before global counts)
    assert rank_denominator(torch.tensor(7)) is None
    gen = torch.Generator().manual_seed(0)
    logits, label = torch.randn(5, 9, generator=gen), torch.tensor([0, 3, 8, 2, 2])
    masked = torch.rand(5, 9, generator=gen) > 0.7
    masked[torch.arange(5), label] = False
    plain = F.cross_entropy(logits.masked_fill(masked, torch.finfo(logits.dtype).min), label)
    assert torch.equal(candidate_softmax(logits, label, masked), plain)
    states, pos, neg = (torch.randn(2, 3, 4, generator=gen) for _ in range(3))
    mask = torch.tensor([[False, True, True], [True, True, True]])
    s_pos, s_neg = (states * pos).sum(-1)[mask], (states * neg).sum(-1)[mask]
    want = (F.binary_cross_entropy_with_logits(s_pos, torch.ones_like(s_pos))
            + F.binary_cross_entropy_with_logits(s_neg, torch.zeros_like(s_neg)))
    assert torch.equal(bce_loss(Scorer("dot"), states, pos, neg, mask), want)
    # under DDP: the sum over this rank's positions / (global positions / W); a rank without positions adds 0
    share = torch.tensor(2.5, dtype=torch.float64)
    torch.testing.assert_close(candidate_softmax(logits, label, masked, share), plain * 5 / 2.5)
    torch.testing.assert_close(bce_loss(Scorer("dot"), states, pos, neg, mask, share), want * 5 / 2.5)
    assert candidate_softmax(logits[:0], label[:0], None, share).item() == 0.0


def test_cosine_model_ranks_by_direction(model_and_data):
    model, _ = model_and_data
    model = _with(model, scorer=Scorer("cosine"))
    try:
        table = model.item_table()
        ranked = model.ranking_table(table)
        torch.testing.assert_close(ranked[1:].norm(dim=-1), torch.ones(model.num_items, dtype=ranked.dtype))
        assert torch.equal(ranked[0], torch.zeros_like(ranked[0]))  # padding stays the zero row
    finally:
        _with(model, scorer=Scorer("dot"))


def test_schedule_warmup_then_decay():
    cfg = parse_args(["--warmup_steps=4", "--lr_schedule=linear"])
    factors = [schedule_factor(cfg, s, 14) for s in range(15)]
    assert factors[:4] == [0.25, 0.5, 0.75, 1.0]
    assert factors[4] == 1.0 and factors[9] == pytest.approx(0.5) and factors[14] == 0.0
    cosine = parse_args(["--lr_schedule=cosine"])
    assert schedule_factor(cosine, 0, 10) == 1.0 and schedule_factor(cosine, 5, 10) == pytest.approx(0.5)
    assert schedule_factor(cosine, 10, 10) == pytest.approx(0.0, abs=1e-12)
    assert all(schedule_factor(parse_args([]), s, 10) == 1.0 for s in range(10))
    with pytest.raises(SystemExit, match="learn_temperature"):
        parse_args(["--learn_temperature=true"])
    assert math.isclose(schedule_factor(parse_args(["--warmup_steps=2"]), 0, 5), 0.5)
