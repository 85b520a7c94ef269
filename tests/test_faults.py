"""Faults during a run, on CPU with the tiny fixtures: per-epoch checkpoints (keep_last), NaN losses and
gradients (nonfinite=stop|skip), an output directory that cannot take files, a disk that fills up while a
checkpoint is written."""
from __future__ import annotations

import errno
import json
from pathlib import Path

import pytest
import torch

import adapter4rec.training.assemble as assemble
import adapter4rec.training.train as train
from adapter4rec.checkpoint import read_checkpoint
from adapter4rec.config import parse_args
from adapter4rec.models.recommender import Recommender
from tests.conftest import tiny_args

STEPS = 4  # batches per epoch


def args(tiny_bert, tiny_data, out, **extra):
    # keep_run_state: these tests look at the run's files as training leaves them, before a finished run drops them
    base = dict(epochs=3, max_steps_per_epoch=STEPS, save_every_steps=2, loss="bce", run_name="r",
                keep_run_state="true")
    base.update(extra)
    return tiny_args(tiny_bert, tiny_data / "source", out, **base)


def metrics_of(run_dir):
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def epoch_files(run_dir):
    return sorted(p.name for p in run_dir.glob("epoch-*.pt"))


# ------------------------------------------------------------------------------------------ keep_last
def test_keep_last_keeps_the_newest_epochs(tiny_bert, tiny_data, tmp_path):
    train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, epochs=4, keep_last=2)))
    run_dir = tmp_path / "r"
    assert epoch_files(run_dir) == ["epoch-2.pt", "epoch-3.pt"]
    best, lines = read_checkpoint(run_dir / "best.pt"), metrics_of(run_dir)
    for n in (2, 3):
        ckpt = read_checkpoint(run_dir / f"epoch-{n}.pt")
        assert set(ckpt) == set(best) and ckpt["epoch"] == n  # the format of best.pt
        assert ckpt["metrics"]["ndcg@10"] == lines[n]["ndcg@10"]
    assert (run_dir / "last.pt").is_file() and not list(run_dir.glob(".*.tmp"))
    # the same folder trained afresh (overwrite) for fewer epochs: the old epoch-2/3 files must not pass for the newest
    train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, epochs=2, keep_last=2, overwrite="true")))
    assert epoch_files(run_dir) == ["epoch-0.pt", "epoch-1.pt"]


def test_keep_last_leaves_a_foreign_epoch_file_alone(tiny_bert, tiny_data, tmp_path):
    # the original code names its checkpoints epoch-N.pt too; one copied into the run folder is not ours
    (tmp_path / "r").mkdir()
    torch.save({"state_dict": {"w": torch.ones(2)}}, tmp_path / "r" / "epoch-30.pt")
    train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, epochs=2)))
    assert epoch_files(tmp_path / "r") == ["epoch-1.pt", "epoch-30.pt"]
    # finished without keep_run_state: our epoch files go, the foreign one stays
    train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, epochs=1, keep_run_state="false", overwrite="true")))
    assert epoch_files(tmp_path / "r") == ["epoch-30.pt"] and not (tmp_path / "r" / "last.pt").exists()


def test_keep_last_zero_writes_no_epoch_file(tiny_bert, tiny_data, tmp_path):
    train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, epochs=2, keep_last=0)))
    assert epoch_files(tmp_path / "r") == [] and (tmp_path / "r" / "best.pt").is_file()


def test_failed_epoch_save_keeps_the_older_file_and_resume_is_exact(tiny_bert, tiny_data, tmp_path, monkeypatch):
    straight = train.run(parse_args(args(tiny_bert, tiny_data, tmp_path / "a")))
    real_save = train.save_atomic

    def disk_full_at_epoch_2(obj, path):
        if path.name == "epoch-2.pt":
            raise OSError(errno.ENOSPC, "No space left on device")
        real_save(obj, path)
    monkeypatch.setattr(train, "save_atomic", disk_full_at_epoch_2)
    with pytest.raises(OSError):
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path / "b")))
    run_dir = tmp_path / "b" / "r"
    assert epoch_files(run_dir) == ["epoch-1.pt"]  # keep_last=1, yet epoch 1 is kept: epoch 2 never landed
    assert read_checkpoint(run_dir / "epoch-1.pt")["epoch"] == 1
    monkeypatch.setattr(train, "save_atomic", real_save)
    resumed = train.run(parse_args(args(tiny_bert, tiny_data, tmp_path / "b")))  # from last.pt, mid-epoch 2
    assert resumed["test"] == straight["test"]
    assert epoch_files(run_dir) == ["epoch-2.pt"]


# ------------------------------------------------------------------------------------------ non-finite loss
class NanGradient(torch.autograd.Function):
    """Identity forward, NaN backward: a finite loss whose gradients are all NaN."""
    @staticmethod
    def forward(ctx, loss):
        return loss.clone()

    @staticmethod
    def backward(ctx, grad):
        return grad * float("nan")


def inject(monkeypatch, at_call: int, kind: str = "loss", on_fault=None) -> dict:
    """Make the `at_call`-th training forward non-finite: its loss ('loss'), or only its gradients ('grad').
    Returns {0: parameters the faulty batch saw, 1: parameters the next batch saw} (filled as it runs);
    `on_fault()` is called when the faulty batch starts."""
    real, calls, seen = Recommender.forward, [0], {}

    def forward(self, *a, **k):
        calls[0] += 1
        if calls[0] == at_call and on_fault:
            on_fault()
        if calls[0] in (at_call, at_call + 1):
            seen[calls[0] - at_call] = {n: p.detach().clone() for n, p in self.named_parameters()}
        loss = real(self, *a, **k)
        if calls[0] != at_call:
            return loss
        return loss * float("nan") if kind == "loss" else NanGradient.apply(loss)
    monkeypatch.setattr(Recommender, "forward", forward)
    return seen


def snapshot(run_dir):
    return {name: (run_dir / name).read_bytes() for name in ("best.pt", "last.pt", "epoch-0.pt")}


def test_nonfinite_stop_leaves_checkpoints_untouched(tiny_bert, tiny_data, tmp_path, monkeypatch):
    run_dir, before = tmp_path / "r", {}
    real = Recommender.forward
    # epoch 1, step 3: after the mid-epoch last.pt of step 2; record what is on disk when that batch starts
    inject(monkeypatch, at_call=STEPS + 4, on_fault=lambda: before.update(snapshot(run_dir)))
    with pytest.raises(FloatingPointError, match="non-finite loss nan at epoch 1 step 3") as err:
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path)))
    assert "nonfinite=skip" in str(err.value)
    assert before and snapshot(run_dir) == before  # nothing was written after the fault
    assert read_checkpoint(run_dir / "last.pt")["progress"]["step"] == 2
    assert read_checkpoint(run_dir / "best.pt")["epoch"] == 0
    assert not list(run_dir.glob(".*.tmp")) and not (run_dir / "results.json").exists()
    # the documented way on: start it again with nonfinite=skip; it resumes from last.pt (epoch 1, step 2)
    monkeypatch.setattr(Recommender, "forward", real)
    inject(monkeypatch, at_call=2)  # the same batch (step 3) is the 2nd forward of the resumed run
    res = train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, nonfinite="skip")))
    assert res["nonfinite_skipped"] == 1 and [m["nonfinite_skipped"] for m in metrics_of(run_dir)] == [0, 1, 0]


@pytest.mark.parametrize("kind,grad_clip", [("loss", 0.0), ("grad", 0.0), ("grad", 1.0)])
def test_nonfinite_skip_makes_no_update(tiny_bert, tiny_data, tmp_path, monkeypatch, kind, grad_clip):
    seen = inject(monkeypatch, at_call=STEPS + 2, kind=kind)  # epoch 1, step 1
    res = train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, nonfinite="skip", grad_clip=grad_clip)))
    for name, value in seen[0].items():  # the skipped step changed no parameter
        assert torch.equal(seen[1][name], value), name
    last = read_checkpoint(tmp_path / "r" / "last.pt")
    adam_steps = {int(state["step"]) for state in last["optimizer"]["state"].values()}
    assert adam_steps == {3 * STEPS - 1}  # ... and no optimizer state: one AdamW step fewer than batches
    assert all(torch.isfinite(v).all() for v in last["model"].values() if v.is_floating_point())
    assert res["nonfinite_skipped"] == 1
    assert json.loads((tmp_path / "r" / "results.json").read_text())["nonfinite_skipped"] == 1
    lines = metrics_of(tmp_path / "r")
    assert [m["nonfinite_skipped"] for m in lines] == [0, 1, 0]
    assert all(m["loss"] == m["loss"] for m in lines)  # the mean loss leaves the skipped batch out (no NaN)
    what = "loss nan" if kind == "loss" else "gradient norm"
    assert f"non-finite {what}" in (tmp_path / "r" / "log.txt").read_text()
    assert "at epoch 1 step 1: update skipped" in (tmp_path / "r" / "log.txt").read_text()


def test_nonfinite_gradient_stops_by_default(tiny_bert, tiny_data, tmp_path, monkeypatch):
    inject(monkeypatch, at_call=2, kind="grad")
    with pytest.raises(FloatingPointError, match="non-finite gradient norm nan at epoch 0 step 1"):
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path)))


# ------------------------------------------------------------------------------------------ output directory
def test_output_dir_under_a_file_fails_before_any_work(tiny_bert, tiny_data, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a regular file: nothing can be created under it, even by root")
    monkeypatch.setattr(assemble, "load_data", lambda cfg: pytest.fail("data was loaded before the check"))
    with pytest.raises(SystemExit) as err:
        train.run(parse_args(args(tiny_bert, tiny_data, blocker)))
    msg = str(err.value.code)
    assert f"output directory {blocker / 'r'} is not writable" in msg and "output_dir" in msg


def test_read_only_output_dir(tiny_bert, tiny_data, tmp_path, monkeypatch):
    """A folder the process may not write to. Root ignores mode bits (CI runs as root), so the refusal the kernel
    would give an ordinary user, EACCES on the first write under the folder, is simulated for every user."""
    import builtins

    out = tmp_path / "ro"
    out.mkdir()

    def refuse_under_out(file, *a, **k):
        if out in Path(file).parents:
            raise PermissionError(errno.EACCES, "Permission denied", str(file))
        return builtins.open(file, *a, **k)
    monkeypatch.setattr("adapter4rec.run.folder.open", refuse_under_out, raising=False)  # its first file: .lock
    monkeypatch.setattr(assemble, "load_data", lambda cfg: pytest.fail("data was loaded before the check"))
    with pytest.raises(SystemExit) as err:
        train.run(parse_args(args(tiny_bert, tiny_data, out)))
    msg = str(err.value.code)
    assert f"output directory {out / 'r'} is not writable (Permission denied" in msg and ".lock" in msg


def test_nonfinite_skip_stops_a_diverged_run(tiny_bert, tiny_data, tmp_path, monkeypatch):
    """Every batch non-finite: skipping would go on forever; after MAX_SKIPS_IN_A_ROW the run stops."""
    monkeypatch.setattr(train, "MAX_SKIPS_IN_A_ROW", 3)
    real = Recommender.forward
    monkeypatch.setattr(Recommender, "forward", lambda self, *a, **k: real(self, *a, **k) * float("nan"))
    with pytest.raises(FloatingPointError, match="3 updates in a row were skipped"):
        train.run(parse_args(args(tiny_bert, tiny_data, tmp_path, nonfinite="skip")))
