"""Exact resume: a run interrupted mid-epoch and continued from last.pt ends with the metrics of an
uninterrupted run (bit-exact on CPU in one process), and resuming refuses a different configuration."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import pytest

import adapter4rec.training.train as train
from adapter4rec.checkpoint import CheckpointError, read_checkpoint, save_atomic
from adapter4rec.config import REPO_ROOT, parse_args
from adapter4rec.run.folder import RunFolderError
from tests.conftest import tiny_args

RUN_PY = REPO_ROOT / "Pretraining" / "Text" / "run.py"


def args(tiny_bert, tiny_data, out, **extra):
    base = dict(epochs=3, max_steps_per_epoch=7, save_every_steps=2, loss="bce", precision="fp32", run_name="r",
                keep_run_state="true")  # the tests read last.pt after a run ends
    base.update(extra)
    return tiny_args(tiny_bert, tiny_data / "source", out, **base)


def epochs_of(run_dir):
    """metrics.jsonl without the wall-clock column."""
    lines = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in line.items() if k != "seconds"} for line in lines]


# Saves of a 7-step epoch with save_every_steps=2: steps 2, 4, 6 and the epoch end (recorded as step 0 of the
# next epoch). Crashing after save 3 stops mid-epoch 0, after 4 exactly at the boundary, after 6 in the middle of
# epoch 1 — where a sampler whose generator state was not restored would replay epoch 0's order, and the
# resumed epoch's loss in metrics.jsonl would differ.
@pytest.mark.parametrize("crash_at,extra", [
    (3, {}), (4, {}), (6, {}),
    (6, {"tune": "peft", "adapter": "houlsby", "train_head": "true", "stage": "downstream"}),  # adapters resumed
    (6, {"loss": "softmax", "softmax_negatives": 5, "lr_schedule": "cosine", "warmup_steps": 3}),
], ids=["mid-epoch-0", "epoch-boundary", "mid-epoch-1", "peft", "sampled-softmax-schedule"])
def test_crash_then_resume_equals_uninterrupted(tiny_bert, tiny_data, tmp_path, monkeypatch, crash_at, extra):
    straight = train.run(parse_args(args(tiny_bert, tiny_data, tmp_path / "a", **extra)))
    saves = []
    real_save = train.save_last

    def crash_after_save(*a, **k):
        real_save(*a, **k)
        saves.append((a[5].epoch, a[5].step))  # progress at the save
        if len(saves) == crash_at:
            raise KeyboardInterrupt("simulated kill")
    monkeypatch.setattr(train, "save_last", crash_after_save)
    with pytest.raises(KeyboardInterrupt):
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path / "b", **extra)))
    assert saves[-1] == {3: (0, 6), 4: (1, 0), 6: (1, 4)}[crash_at]
    monkeypatch.setattr(train, "save_last", real_save)
    resumed = train.run(parse_args(args(tiny_bert, tiny_data, tmp_path / "b", **extra)))
    assert resumed["test"] == straight["test"]
    assert epochs_of(tmp_path / "b" / "r") == epochs_of(tmp_path / "a" / "r")  # every epoch's loss and metrics
    assert "resuming at epoch" in (tmp_path / "b" / "r" / "log.txt").read_text()


def test_sigkill_then_resume_equals_uninterrupted(tiny_bert, tiny_data, tmp_path):
    cmd = [sys.executable, str(RUN_PY), *args(tiny_bert, tiny_data, tmp_path / "k", epochs=4,
                                              max_steps_per_epoch=0, save_every_steps=3)]
    env = dict(os.environ, OMP_NUM_THREADS="1", HF_HUB_OFFLINE="1")
    straight = [sys.executable, str(RUN_PY), *args(tiny_bert, tiny_data, tmp_path / "s", epochs=4,
                                                   max_steps_per_epoch=0, save_every_steps=3)]
    # the uninterrupted run goes on the other core meanwhile (1 thread each: the same results either way)
    reference = subprocess.Popen(straight, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    last = tmp_path / "k" / "r" / "last.pt"
    deadline = time.time() + 120
    while not last.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)  # at whatever point it has reached: any point must resume exactly
    proc.wait()
    subprocess.run(cmd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert reference.wait() == 0
    got = json.loads((tmp_path / "k" / "r" / "results.json").read_text())["test"]
    want = json.loads((tmp_path / "s" / "r" / "results.json").read_text())["test"]
    assert got == want
    assert epochs_of(tmp_path / "k" / "r") == epochs_of(tmp_path / "s" / "r")


def test_resume_refuses_a_different_configuration(tiny_bert, tiny_data, tmp_path, monkeypatch):
    def crash(*a, **k):
        raise KeyboardInterrupt("stop after the first save")
    real_save = train.save_last
    monkeypatch.setattr(train, "save_last", lambda *a, **k: (real_save(*a, **k), crash()))
    with pytest.raises(KeyboardInterrupt):
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path)))
    monkeypatch.setattr(train, "save_last", real_save)
    with pytest.raises(CheckpointError, match="lr"):
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, lr=0.5)))
    # resume=none does not replace the unfinished run on its own; with overwrite=true it starts afresh
    with pytest.raises(RunFolderError, match="resume=none; resume=auto continues it, or set overwrite=true"):
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, lr=0.5, resume="none")))
    fresh = train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, lr=0.5, resume="none", overwrite="true")))
    assert fresh["test"]["users"] > 0


def test_resume_refuses_another_process_count_and_a_non_resumable_file(tiny_bert, tiny_data, tmp_path):
    train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, epochs=1)))
    run_dir = tmp_path / "r"
    ckpt = read_checkpoint(run_dir / "last.pt")
    ckpt["rng"] = ckpt["rng"] * 2  # as if written by 2 processes
    save_atomic(ckpt, tmp_path / "two.pt")
    with pytest.raises(CheckpointError, match="written by 2 process"):
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, epochs=2, resume=tmp_path / "two.pt",
                                  overwrite="true")))
    # best.pt holds weights only: no optimizer, progress or random-number state to continue from
    with pytest.raises(CheckpointError, match="not a resumable checkpoint"):
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, epochs=2, resume=run_dir / "best.pt",
                                  overwrite="true")))


@pytest.mark.parametrize("where", ["mid-epoch-1", "during-evaluation"])
def test_sigterm_finishes_the_step_saves_and_resumes_exactly(tiny_bert, tiny_data, tmp_path, monkeypatch, where):
    """Preemption: SIGTERM finishes the current step (or the evaluation under way), writes last.pt and exits with
    128 + 15; running the command again continues bit-exactly."""
    extra = dict(save_every_steps=0)  # last.pt only from the signal and the epoch ends
    straight = train.run(parse_args(args(tiny_bert, tiny_data, tmp_path / "a", **extra)))
    calls = {"step": 0, "validate": 0}
    real_step, real_validate = train.train_step, train.validate

    def step_then_signal(*a, **k):
        calls["step"] += 1
        out = real_step(*a, **k)
        if where == "mid-epoch-1" and calls["step"] == 10:  # step 3 of epoch 1 (7 steps per epoch)
            os.kill(os.getpid(), signal.SIGTERM)
        return out

    def validate_with_signal(*a, **k):
        calls["validate"] += 1
        if where == "during-evaluation" and calls["validate"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)
        return real_validate(*a, **k)
    monkeypatch.setattr(train, "train_step", step_then_signal)
    monkeypatch.setattr(train, "validate", validate_with_signal)
    with pytest.raises(SystemExit) as stopped:
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path / "b", **extra)))
    assert stopped.value.code == 128 + signal.SIGTERM
    saved = read_checkpoint(tmp_path / "b" / "r" / "last.pt")["progress"]
    assert (saved["epoch"], saved["step"]) == ((1, 3) if where == "mid-epoch-1" else (2, 0))
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(signal.getsignal(signal.SIGTERM))
    monkeypatch.setattr(train, "train_step", real_step)
    monkeypatch.setattr(train, "validate", real_validate)
    resumed = train.run(parse_args(args(tiny_bert, tiny_data, tmp_path / "b", **extra)))
    assert resumed["test"] == straight["test"]
    assert epochs_of(tmp_path / "b" / "r") == epochs_of(tmp_path / "a" / "r")
    assert "stopped by SIGTERM" in (tmp_path / "b" / "r" / "log.txt").read_text()


def _last_pt(run_dir, **settings):
    """A last.pt holding a config and empty resume state: enough for find_resume's checks (no weights are read)."""
    import dataclasses

    from adapter4rec.checkpoint import FORMAT
    from adapter4rec.config import Config
    cfg = Config(**settings)
    save_atomic({"format": FORMAT, "config": dataclasses.asdict(cfg), "model": {}, "progress": {}, "rng": [{}]},
                run_dir / "last.pt")
    return cfg


@pytest.mark.parametrize("schedule", ["cosine", "linear"])
def test_resume_refuses_other_epochs_under_a_decaying_schedule(tmp_path, schedule):
    import dataclasses

    from adapter4rec.run.resume import find_resume
    cfg = _last_pt(tmp_path, epochs=3, lr_schedule=schedule, warmup_steps=2)
    assert find_resume(tmp_path, cfg)["config"]["epochs"] == 3  # the same settings resume
    with pytest.raises(CheckpointError) as err:
        find_resume(tmp_path, dataclasses.replace(cfg, epochs=5))
    msg = str(err.value)
    assert f"epochs=3 and this one has epochs=5: lr_schedule={schedule}" in msg and "\n" not in msg
    assert "keep epochs=3 to continue exactly, or start afresh with epochs=5 overwrite=true" in msg
    with pytest.raises(CheckpointError, match="overwrite=true resume=auto$"):  # resume=PATH: afresh needs auto
        find_resume(tmp_path, dataclasses.replace(cfg, epochs=5, resume=str(tmp_path / "last.pt")))


def test_resume_may_change_epochs_under_a_constant_schedule(tmp_path):
    import dataclasses

    from adapter4rec.run.resume import find_resume
    cfg = _last_pt(tmp_path, epochs=3, lr_schedule="constant", warmup_steps=2)
    assert find_resume(tmp_path, dataclasses.replace(cfg, epochs=5, patience=2)) is not None


def test_resume_given_a_run_folder_suggests_its_last_pt(tmp_path):
    import dataclasses

    from adapter4rec.run.resume import find_resume
    cfg = dataclasses.replace(_last_pt(tmp_path), resume=str(tmp_path))
    with pytest.raises(CheckpointError, match=f"{tmp_path} is a folder, not a checkpoint file; give the file inside "
                                              f"it: {tmp_path / 'last.pt'}$"):
        find_resume(tmp_path, cfg)
