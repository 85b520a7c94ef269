"""Faults in a 2-process gloo run (torchrun, CPU): one rank raising ends the whole job with its message,
a NaN loss on one rank only is skipped (or stops the run) on every rank together, without a hang, and SIGTERM
on one rank stops every rank after the same step, to be resumed bit-exactly.

(Evaluation with a user count not divisible by the world size is tested in test_distributed.py: 101
users over 2 processes, each counted exactly once.)"""
from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adapter4rec.config import REPO_ROOT
from tests.conftest import tiny_args

TIMEOUT = 90  # far above a healthy run (about 6 s here); a hang shows as a failure, not a stuck test run


def torchrun(tiny_bert, tiny_data, out, fault: str, rank: int, call: int, **extra) -> tuple[int, str]:
    """Run tests/fault_run.py under torchrun with 2 processes; (exit code, stdout + stderr)."""
    args = tiny_args(tiny_bert, tiny_data / "source", out, run_name="r", device="cpu", epochs=2,
                     max_steps_per_epoch=3, save_every_steps=0, **extra)
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false",
               FAULT=fault, FAULT_RANK=str(rank), FAULT_CALL=str(call), PYTHONPATH=str(REPO_ROOT))
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(REPO_ROOT / "tests" / "fault_run.py"), *args]
    log = out / "torchrun.log"
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as handle:  # a file, not a pipe: a hung worker holding a pipe open cannot block us
        proc = subprocess.Popen(cmd, cwd=REPO_ROOT, env=env, stdout=handle, stderr=subprocess.STDOUT)
        try:
            proc.wait(timeout=TIMEOUT)
        except subprocess.TimeoutExpired:
            stop(proc)
            pytest.fail(f"the 2-process job hung for {TIMEOUT} s:\n{log.read_text()[-3000:]}")
    return proc.returncode, log.read_text()


def stop(proc: subprocess.Popen) -> None:
    """End a hung torchrun and its workers (they run in sessions of their own, so a process-group kill
    would miss them): SIGTERM makes torchrun stop its workers; SIGKILL whatever is left."""
    workers = [int(p.name) for p in Path("/proc").glob("[0-9]*") if _parent(p) == proc.pid]
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
    for pid in workers:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def _parent(proc_dir: Path) -> int | None:
    try:  # /proc/PID/stat: "pid (comm) state ppid ..."; comm may hold spaces, so split after its ")"
        return int((proc_dir / "stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


def test_one_rank_raising_ends_the_job(tiny_bert, tiny_data, tmp_path):
    # rank 1 fails in its 2nd step while rank 0 waits for it in that step's collectives
    code, output = torchrun(tiny_bert, tiny_data, tmp_path, "raise", rank=1, call=2)
    assert code != 0, output[-3000:]
    # torchrun's closing summary (after "<script> FAILED") carries rank 1's exception, not only its stderr
    summary = output[output.rindex(" FAILED"):]
    assert "injected fault on rank 1 at training forward 2" in summary, output[-3000:]
    assert not (tmp_path / "r" / "results.json").exists()


def test_nan_on_one_rank_is_skipped_on_every_rank(tiny_bert, tiny_data, tmp_path):
    code, output = torchrun(tiny_bert, tiny_data, tmp_path, "nan", rank=1, call=2, nonfinite="skip")
    assert code == 0, output[-3000:]
    results = json.loads((tmp_path / "r" / "results.json").read_text())
    assert results["nonfinite_skipped"] == 1
    lines = [json.loads(line) for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [m["nonfinite_skipped"] for m in lines] == [1, 0]
    log = (tmp_path / "r" / "log.txt").read_text()
    assert "non-finite loss on 1 of 2 processes" in log and "at epoch 0 step 1: update skipped" in log


def test_nan_on_one_rank_stops_every_rank(tiny_bert, tiny_data, tmp_path):
    code, output = torchrun(tiny_bert, tiny_data, tmp_path, "nan", rank=1, call=2)
    assert code != 0
    # both ranks stop on the all-reduced verdict: rank 1 saw NaN, rank 0 its own finite loss
    assert "FloatingPointError: non-finite loss on 1 of 2 processes (here nan)" in output
    assert re.search(r"FloatingPointError: non-finite loss on 1 of 2 processes \(here \d", output), output[-3000:]
    assert "at epoch 0 step 1; stopped (nonfinite=stop)" in output


def test_sigterm_on_one_rank_stops_every_rank_at_the_same_step_and_resumes_exactly(tiny_bert, tiny_data, tmp_path):
    code, output = torchrun(tiny_bert, tiny_data, tmp_path / "a", "none", rank=-1, call=0)
    assert code == 0, output[-3000:]
    straight = json.loads((tmp_path / "a" / "r" / "results.json").read_text())
    # rank 1 alone is preempted during its 2nd step (epoch 0); rank 0 learns it through the all-reduced flag
    code, output = torchrun(tiny_bert, tiny_data, tmp_path / "b", "sigterm", rank=1, call=2)
    assert code != 0 and not (tmp_path / "b" / "r" / "results.json").exists(), output[-3000:]
    from adapter4rec.checkpoint import read_checkpoint
    saved = read_checkpoint(tmp_path / "b" / "r" / "last.pt")
    assert (saved["progress"]["epoch"], saved["progress"]["step"]) == (0, 2)
    assert len(saved["rng"]) == 2  # both ranks' random states: each rank resumes its own streams
    assert "stopped by SIGTERM" in output
    code, output = torchrun(tiny_bert, tiny_data, tmp_path / "b", "none", rank=-1, call=0)  # the same command again
    assert code == 0, output[-3000:]
    resumed = json.loads((tmp_path / "b" / "r" / "results.json").read_text())
    assert resumed["test"] == straight["test"] and resumed["best_epoch"] == straight["best_epoch"]
    assert (tmp_path / "b" / "r" / "metrics.jsonl").read_text().count("loss") == 2
    losses = [json.loads(line)["loss"] for line in (tmp_path / "a" / "r" / "metrics.jsonl").read_text().splitlines()]
    assert [json.loads(line)["loss"] for line in
            (tmp_path / "b" / "r" / "metrics.jsonl").read_text().splitlines()] == losses
