"""A 2-process gloo run (torchrun) against a 1-process run of the same configuration.

The dataset has an odd number of users (101), so the user sharding of evaluation (rank r takes users
r, r+2, ...) has a remainder: rank 0 scores 51 users, rank 1 scores 50. Both runs must count every user
exactly once; evaluating the 2-process checkpoint in one process must reproduce the 2-process metrics.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from adapter4rec.checkpoint import read_checkpoint
from adapter4rec.config import REPO_ROOT, parse_args
from adapter4rec.run.record import derived_seed
from adapter4rec.training.build import build_model, load_data
from adapter4rec.training.train import run, validate
from tests.conftest import tiny_args

USERS = 101
METRICS = [f"{m}@{k}" for m in ("hr", "ndcg") for k in (5, 10, 20)]


@pytest.fixture(scope="module")
def runs(tiny_bert, tiny_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("dist")
    dataset = root / "odd"
    dataset.mkdir()
    lines = (tiny_data / "source" / "users.tsv").read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(lines) > USERS
    (dataset / "users.tsv").write_text("".join(lines[:USERS]), encoding="utf-8")
    (dataset / "items.tsv").write_bytes((tiny_data / "source" / "items.tsv").read_bytes())
    # 2 training steps keep it fast; eval_batch_size 16 gives several evaluation chunks per rank
    common = dict(epochs=1, max_steps_per_epoch=2, device="cpu", eval_batch_size=16)

    def args(name):
        return tiny_args(tiny_bert, dataset, root / "runs", run_name=name, **common)

    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO_ROOT / "Pretraining" / "Text" / "run.py"), *args("ddp")]
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=150)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    single = run(parse_args(args("single"), stage="pretrain", modality="text"))  # in-process, world size 1
    training_seed = torch.initial_seed()  # the last seed set: the training stream's, after the model was built
    ddp_dir = root / "runs" / "ddp"
    return {"args": args("ddp"), "ddp_dir": ddp_dir, "ddp": json.loads((ddp_dir / "results.json").read_text()),
            "single": single, "single_file": json.loads((root / "runs" / "single" / "results.json").read_text()),
            "log": proc.stdout + proc.stderr, "training_seed": training_seed}


def test_two_process_run_writes_its_outputs(runs):
    ddp_dir = runs["ddp_dir"]
    for name in ("results.json", "best.pt", "config.json", "metrics.jsonl", "log.txt"):
        assert (ddp_dir / name).is_file(), name
    assert "world size 2" in (ddp_dir / "log.txt").read_text()
    assert len((ddp_dir / "metrics.jsonl").read_text().splitlines()) == 1  # written once, by rank 0
    assert runs["single"] == runs["single_file"]


def test_every_user_counted_exactly_once(runs):
    for name in ("ddp", "single"):
        res = runs[name]
        assert res["data"]["users"] == USERS
        assert res["test"]["users"] == USERS, name
        assert res["popularity_test"]["users"] == USERS, name


def test_each_rank_draws_its_own_dropout(runs):
    # training draws (dropout, ID dropout) come from a stream seeded per rank once the model is built; with the
    # build's seed alone, two ranks would drop the same units of their different batches
    seed = parse_args(runs["args"], stage="pretrain", modality="text").seed
    assert runs["training_seed"] == derived_seed(seed, "train/rank0")
    assert len({derived_seed(seed, f"train/rank{r}") for r in range(8)} | {seed}) == 9


def test_popularity_metrics_identical(runs):
    # the popularity scorer does not depend on training: any sharding error (a user dropped, doubled, or a
    # sum not reduced) would change these means, which must agree up to float64 summation order
    for key in METRICS:
        assert runs["ddp"]["popularity_test"][key] == pytest.approx(runs["single"]["popularity_test"][key],
                                                                    rel=1e-12, abs=1e-12), key


def test_trained_metrics_agree_within_tolerance(runs):
    # Same seed -> same initial weights (DDP also broadcasts rank 0's). Both runs then take 2 Adam steps
    # (lr 1e-4 / 5e-5) on different batches (32 users averaged over 2 ranks vs 16 users), so each weight
    # differs by at most a few 1e-4 and the models rank items almost identically. We allow 0.05 absolute
    # (about 5 of the 101 users changing their hit/miss at K); a broken evaluation (half the users, or
    # sums not reduced over ranks -> values about halved) is far outside it.
    for key in METRICS:
        assert abs(runs["ddp"]["test"][key] - runs["single"]["test"][key]) <= 0.05, key


def test_same_checkpoint_same_metrics_with_one_process(runs):
    cfg = parse_args(runs["args"], stage="pretrain", modality="text")
    data = load_data(cfg)
    model = build_model(cfg, data)
    ckpt = read_checkpoint(runs["ddp_dir"] / "best.pt")
    model.load_state_dict(ckpt["model"])
    device = torch.device("cpu")
    test = validate(model, data.split.test, cfg, device, "test")
    valid = validate(model, data.split.valid, cfg, device, "valid")
    assert test["users"] == valid["users"] == USERS
    for key in METRICS:
        # the 2-process test metrics (sharded 51 + 50 users, all-reduced) = one process over all 101 users
        assert test[key] == pytest.approx(runs["ddp"]["test"][key], abs=1e-6), key
        # the validation metrics stored with the checkpoint were computed by the 2-process run as well
        assert valid[key] == pytest.approx(ckpt["metrics"][key], abs=1e-6), key


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device for an NCCL process group")
def test_evaluate_inside_an_nccl_group(tmp_path):
    # A 1-rank NCCL group is enough to show it: torch.distributed routes CPU tensors to no backend then.
    import numpy as np
    import torch.distributed as torch_dist

    from adapter4rec.data.files import Interactions
    from adapter4rec.data.split import leave_one_out
    from adapter4rec.evaluate import evaluate

    split = leave_one_out(Interactions(["a", "b"], [np.array([1, 2, 3]), np.array([3, 2, 1])], 4, {}), 2).test
    device = torch.device("cuda", 0)
    torch.cuda.set_device(device)
    torch_dist.init_process_group("nccl", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1)
    try:
        scores = torch.tensor([0.0, 4.0, 3.0, 2.0, 1.0], device=device)
        res = evaluate(lambda h: scores.expand(h.shape[0], -1).clone(), split, [1], 8, device)
    finally:
        torch_dist.destroy_process_group()
    # a: items 1, 2 masked -> target 3 (2.0) above item 4 -> hit; b: 3, 2 masked -> target 1 (4.0) -> hit
    assert res["users"] == 2 and res["hr@1"] == pytest.approx(1.0)
