"""DDP with gathered negatives: 2 processes, each holding half of a batch, compute the loss and gradients that
one process computes over the whole batch (the in-batch and the sampled softmax see the GLOBAL candidates)."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys

import pytest
import torch

from adapter4rec.build import build_model, load_data
from adapter4rec.config import REPO_ROOT, parse_args
from tests.conftest import tiny_args


def _full_rows(train: torch.Tensor, n: int) -> torch.Tensor:
    """n windows without padding: every row has the same number of loss positions, so the mean of the two
    ranks' mean losses equals the mean loss of the whole batch."""
    full = train[(train > 0).all(1)]
    assert len(full) >= n
    return full[:n]


@pytest.mark.parametrize("loss,negatives", [("inbatch", 0), ("softmax", 5)])
def test_two_ranks_see_the_global_batch(tiny_bert, tiny_data, tmp_path, loss, negatives):
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, dropout=0.0, loss=loss,
                               softmax_negatives=negatives, device="cpu"))
    data = load_data(cfg)
    seqs = _full_rows(data.split.train, 6)
    shared = torch.randint(1, len(data.catalog) + 1, (2, negatives), generator=torch.Generator().manual_seed(1))
    (tmp_path / "cfg.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    torch.save((seqs, shared), tmp_path / "seqs.pt")
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    out = tmp_path / "out.pt"  # both the gathered loss and the control, from one 2-process launch
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO_ROOT / "tests" / "gather_worker.py"), str(tmp_path / "cfg.json"),
                           str(tmp_path / "seqs.pt"), str(out)], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    outputs = torch.load(out)

    torch.manual_seed(0)
    model = build_model(cfg, data).double().eval()
    # one process, whole batch: the shared negatives of both ranks together
    whole = model(seqs, shared.reshape(-1) if negatives else None)
    whole.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    gathered = outputs["1"]
    assert gathered["loss"] == pytest.approx(whole.item(), rel=1e-9)
    assert set(gathered["grads"]) == set(grads)
    for name, grad in grads.items():
        torch.testing.assert_close(gathered["grads"][name], grad, rtol=1e-7, atol=1e-10, msg=name)
    # control: without gathering each rank ranks against its own half only, which is a different loss
    assert abs(outputs["0"]["loss"] - whole.item()) > 1e-4
