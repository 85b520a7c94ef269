"""Same seed, same data, same config -> the same numbers, bit for bit, on CPU.

Without deterministic kernels the backward of the item-embedding gather (index_put with accumulate) adds
in thread order: repeated backward passes of one batch gave different gradients (seen on 2 threads)."""
from __future__ import annotations

import json

import torch

from adapter4rec.run.record import seed_everything
from adapter4rec.training.build import build_model, load_data
from adapter4rec.training.train import run
from tests.test_image_models import image_config


def test_repeated_backward_gives_identical_gradients(tiny_vit, tiny_image_data, tmp_path):
    cfg = image_config(tiny_vit, tiny_image_data, tmp_path, stage="pretrain", tune="all", loss="inbatch",
                       dataset=str(tiny_image_data / "source"))
    seed_everything(cfg.seed, deterministic=True)
    model = build_model(cfg, load_data(cfg)).train()
    seqs = load_data(cfg).split.train[:64]
    grads = []
    for _ in range(5):
        model.zero_grad()
        torch.manual_seed(0)  # the same dropout masks each time
        model(seqs).backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    assert all(torch.equal(a, b) for other in grads[1:] for a, b in zip(grads[0], other))


def test_two_runs_with_one_seed_are_identical(tiny_vit, tiny_image_data, tmp_path):
    results = []
    for name in ("a", "b"):
        cfg = image_config(tiny_vit, tiny_image_data, tmp_path, stage="pretrain", tune="all", epochs=2,
                           dataset=str(tiny_image_data / "source"), run_name=name, loss="inbatch")
        results.append(run(cfg))
        results[-1]["weights"] = torch.load(tmp_path / name / "best.pt", weights_only=True)["model"]
    a, b = results
    assert json.dumps(a["test"]) == json.dumps(b["test"])
    assert all(torch.equal(a["weights"][k], b["weights"][k]) for k in a["weights"])
