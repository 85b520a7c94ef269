"""DDP: 2 processes holding unequal shares of a batch's loss positions compute, averaged over the ranks as DDP
averages gradients, the loss and gradients that one process computes over the whole batch: every loss divides
by the GLOBAL position count (bce, in-batch, softmax), and the in-batch and the sampled softmax see the GLOBAL
candidates (gathered negatives)."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from adapter4rec.config import REPO_ROOT, parse_args
from adapter4rec.models.negatives import sample_negatives
from adapter4rec.training.build import build_model, load_data
from tests.conftest import tiny_args
from tests.gather_worker import VARIANTS, negatives_of

SPLIT = 2  # rank 0 takes the first 2 windows of the batch, rank 1 the other 4


def _launch(tmp_path, cfg, batch) -> dict:
    """Run tests/gather_worker.py in 2 gloo processes; its outputs."""
    (tmp_path / "cfg.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    torch.save(batch, tmp_path / "batch.pt")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    out = tmp_path / "out.pt"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO_ROOT / "tests" / "gather_worker.py"), str(tmp_path / "cfg.json"),
                           str(tmp_path / "batch.pt"), str(out)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return torch.load(out)


def test_two_ranks_with_unequal_positions_compute_the_whole_batch(tiny_bert, tiny_data, tmp_path):
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, dropout=0.0, device="cpu"))
    data = load_data(cfg)
    seqs = data.split.train[:6]
    positions = ((seqs[:, :-1] > 0) & (seqs[:, 1:] > 0)).sum(1)
    # unequal shares: averaging the ranks' own means would weigh rank 0's positions differently from rank 1's
    assert positions[:SPLIT].sum() * (len(seqs) - SPLIT) != positions[SPLIT:].sum() * SPLIT, positions
    shared = torch.randint(1, len(data.catalog) + 1, (2, 5), generator=torch.Generator().manual_seed(1))
    bce = sample_negatives(seqs, len(data.catalog), torch.Generator().manual_seed(2))
    outputs = _launch(tmp_path, cfg, (seqs, SPLIT, shared, bce))

    torch.manual_seed(0)
    model = build_model(cfg, data).double().eval()
    whole_batch = slice(0, len(seqs))
    for name, (loss_name, negatives, gather) in VARIANTS.items():
        model.loss_name, model.softmax_negatives, model.gather_negatives = loss_name, negatives, gather
        model.zero_grad(set_to_none=True)
        # one process, the whole batch: the shared negatives of both ranks together
        whole = model(seqs, negatives_of(model, whole_batch, shared.reshape(-1), bce))
        if not gather:  # the control: ranking against its own windows only is a different loss
            assert abs(outputs[name]["loss"] - whole.item()) > 1e-4, name
            continue
        whole.backward()
        grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
        # bce takes its loss in fp32 even in a float64 model, so its gradients agree to ~1e-7 of their largest
        # element (the softmax losses to ~1e-12); with each rank's own mean (positions 16 on rank 0, 23 on rank 1
        # in this batch) a position would weigh 1.22 or 0.85 times its share of the whole batch's mean
        assert outputs[name]["loss"] == pytest.approx(whole.item(), rel=1e-6), name
        assert set(outputs[name]["grads"]) == set(grads), name
        for param, grad in grads.items():
            torch.testing.assert_close(outputs[name]["grads"][param], grad, rtol=1e-6,
                                       atol=1e-6 * float(grad.abs().max()) + 1e-12,
                                       msg=lambda text: f"{name}: {param}: {text}")

    # the loss training logs under DDP (train_step, metrics.jsonl) is the whole batch's, not rank 0's own share
    model.loss_name, model.softmax_negatives, model.gather_negatives = VARIANTS["softmax"]
    whole = model(seqs, None).item()
    step = outputs["train_step"]
    assert step["fault"] is None and step["logged"] == pytest.approx(whole, rel=1e-5)
    assert abs(step["own"] - whole) > 1e-3 * whole  # rank 0's own share, logged before, is not
