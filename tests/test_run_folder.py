"""A run folder is owned by one run at a time, written only after every check passes, and never replaced or mixed
without overwrite=true; early stopping leaves a last.pt from which an interrupted test resumes without retraining."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

import adapter4rec.training.assemble as assemble
import adapter4rec.training.train as train
from adapter4rec.checkpoint import CheckpointError
from adapter4rec.config import REPO_ROOT, parse_args
from adapter4rec.run.folder import FolderLock, RunFolderError, claim
from tests.conftest import tiny_args

FILES = ("config.json", "best.pt", "last.pt", "results.json", "metrics.jsonl", "log.txt")


def args(tiny_bert, tiny_data, out, **extra):
    base = dict(epochs=2, max_steps_per_epoch=3, save_every_steps=0, loss="bce", precision="fp32", run_name="r")
    base.update(extra)
    return parse_args(tiny_args(tiny_bert, tiny_data / "source", out, **base))


def snapshot(run_dir):
    return {name: (run_dir / name).read_bytes() for name in FILES if (run_dir / name).is_file()}


@pytest.fixture(scope="module")
def finished(tiny_bert, tiny_data, tmp_path_factory):
    """A finished tiny run: (its output root, its folder, its results)."""
    out = tmp_path_factory.mktemp("finished")
    results = train.run(args(tiny_bert, tiny_data, out))
    return out, out / "r", results


def test_a_folder_in_use_refuses_a_second_start_and_a_killed_holder_leaves_no_lock(tiny_bert, tiny_data, tmp_path):
    run_dir = tmp_path / "r"
    with claim(run_dir):  # another run holds the folder (flock is per open file: this process conflicts too)
        with pytest.raises(RunFolderError, match=r"in use by another run \(pid \d+ on .*\); wait"):
            train.run(args(tiny_bert, tiny_data, tmp_path))
    assert not (run_dir / "config.json").exists()  # the refused start wrote nothing
    # a holder killed with SIGKILL: the kernel drops its lock
    code = ("import os, signal, sys; from pathlib import Path; from adapter4rec.run.folder import FolderLock; "
            "FolderLock(Path(sys.argv[1])).acquire(); os.kill(os.getpid(), signal.SIGKILL)")
    killed = subprocess.run([sys.executable, "-c", code, str(run_dir)], cwd=REPO_ROOT)
    assert killed.returncode == -9
    lock = FolderLock(run_dir)
    lock.acquire()  # not stuck
    lock.release()


def test_the_cli_prints_one_line_for_a_busy_folder(tiny_bert, tiny_data, tmp_path):
    run_dir = tmp_path / "r"
    cmd = [sys.executable, str(REPO_ROOT / "Pretraining" / "Text" / "run.py"),
           *tiny_args(tiny_bert, tiny_data / "source", tmp_path, run_name="r")]
    with claim(run_dir):
        done = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 2
    assert done.stderr.splitlines()[0].startswith("adapter4rec: error: RunFolderError: run folder ")
    assert "Traceback" not in done.stderr


def test_a_finished_run_started_again_with_its_settings_is_done_and_untouched(tiny_bert, tiny_data, finished,
                                                                           monkeypatch):
    out, run_dir, results = finished
    before = snapshot(run_dir)
    monkeypatch.setattr(assemble, "load_data", lambda cfg: pytest.fail("a finished run must not load data again"))
    again = train.run(args(tiny_bert, tiny_data, out, progress="true", keep_last=3))  # runtime keys may differ
    assert again["test"] == results["test"]
    assert snapshot(run_dir) == before  # log.txt included


def test_a_finished_run_is_never_rewritten_by_a_start_that_differs_or_fails(tiny_bert, tiny_data, finished):
    out, run_dir, _ = finished
    before = snapshot(run_dir)
    with pytest.raises(RunFolderError, match=r"holds a finished run .* other settings: lr: 0\.0001 -> 0\.5; "
                                             r"set overwrite=true"):
        train.run(args(tiny_bert, tiny_data, out, lr=0.5))
    with pytest.raises(RunFolderError, match="resume=none"):
        train.run(args(tiny_bert, tiny_data, out, resume="none"))
    # overwrite=true, but a mistyped source checkpoint: the check fails before anything is deleted or written
    with pytest.raises(CheckpointError, match="missing.pt"):
        train.run(args(tiny_bert, tiny_data, out, overwrite="true", stage="downstream",
                       source_checkpoint=str(out / "missing.pt")))
    assert snapshot(run_dir) == before


def test_best_pt_without_last_pt_is_refused_and_overwrite_starts_afresh(tiny_bert, tiny_data, tmp_path, monkeypatch):
    real_finish = train.finish

    def killed_while_testing(*a, **k):
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(train, "finish", killed_while_testing)
    with pytest.raises(KeyboardInterrupt):
        train.run(args(tiny_bert, tiny_data, tmp_path))
    monkeypatch.setattr(train, "finish", real_finish)
    run_dir = tmp_path / "r"
    (run_dir / "last.pt").unlink()
    best = (run_dir / "best.pt").read_bytes()
    with pytest.raises(RunFolderError, match=r"holds best\.pt of an earlier run that never finished "
                                             r"and cannot be resumed \(no last\.pt\)"):
        train.run(args(tiny_bert, tiny_data, tmp_path))
    assert (run_dir / "best.pt").read_bytes() == best
    fresh = train.run(args(tiny_bert, tiny_data, tmp_path, overwrite="true"))
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [0, 1]
    assert fresh["test"]["users"] > 0 and "overwrite=true: the earlier run" in (run_dir / "log.txt").read_text()


def test_early_stop_writes_last_pt_so_a_kill_while_testing_resumes_into_testing(tiny_bert, tiny_data, tmp_path,
                                                                                monkeypatch):
    real_end = train.end_of_epoch

    def stop_after_epoch_1(*a, **k):
        return real_end(*a, **k) or a[5].epoch == 2  # progress has advanced past epoch 1
    monkeypatch.setattr(train, "end_of_epoch", stop_after_epoch_1)
    straight = train.run(args(tiny_bert, tiny_data, tmp_path / "a", epochs=4))
    real_finish = train.finish
    monkeypatch.setattr(train, "finish", lambda *a, **k: (_ for _ in ()).throw(KeyboardInterrupt("killed")))
    with pytest.raises(KeyboardInterrupt):
        train.run(args(tiny_bert, tiny_data, tmp_path / "b", epochs=4))
    monkeypatch.setattr(train, "finish", real_finish)
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: pytest.fail("the stopped run trained again"))
    resumed = train.run(args(tiny_bert, tiny_data, tmp_path / "b", epochs=4))
    assert resumed["test"] == straight["test"]
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "b" / "r" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1]


def test_a_resumed_run_logs_each_epoch_once(tiny_bert, tiny_data, tmp_path, monkeypatch):
    """Killed after epoch 1's metrics line but before its last.pt: the rerun does epoch 1 again from the
    mid-epoch last.pt and metrics.jsonl keeps one line per epoch."""
    real_save = train.save_last

    def killed_at_epoch_1_end(*a, **k):
        if a[5].epoch == 2 and a[5].step == 0:
            raise KeyboardInterrupt("killed before last.pt")
        real_save(*a, **k)
    monkeypatch.setattr(train, "save_last", killed_at_epoch_1_end)
    with pytest.raises(KeyboardInterrupt):
        train.run(args(tiny_bert, tiny_data, tmp_path, epochs=3, save_every_steps=2))
    monkeypatch.setattr(train, "save_last", real_save)
    train.run(args(tiny_bert, tiny_data, tmp_path, epochs=3, save_every_steps=2))
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [0, 1, 2]
