"""launch.JobQueue (`--jobs N` of the Amazon studies): runs at a time, in dependency order, failures stop it."""
from __future__ import annotations

import json
import sys

import pytest

from adapter4rec.experiments.launch import JobQueue, split_jobs

# a stand-in for run.py: records when it ran, with how many threads, and whether its input existed
FAKE_RUN = """
import json, os, sys, time
out, name, reads, seconds, status = sys.argv[1:6]
start = time.time()
ready = reads == "-" or os.path.exists(reads)
time.sleep(float(seconds))
os.makedirs(os.path.join(out, name), exist_ok=True)
with open(os.path.join(out, name, "best.pt"), "w") as f:
    json.dump(dict(start=start, end=time.time(), threads=os.environ.get("OMP_NUM_THREADS"), ready=ready), f)
sys.exit(int(status))
"""


def submit(queue, tmp_path, name, reads="-", seconds=0.4, status=0):
    script = tmp_path / "fake_run.py"
    script.write_text(FAKE_RUN)
    cmd = [sys.executable, str(script), str(tmp_path / "runs"), name, reads, str(seconds), str(status)]
    queue.submit(name, cmd, [reads])


def record(tmp_path, name):
    return json.loads((tmp_path / "runs" / name / "best.pt").read_text())


def test_runs_go_two_at_a_time_and_a_run_waits_for_the_run_it_reads(tmp_path):
    queue = JobQueue(2, tmp_path / "logs", threads=1, poll_seconds=0.05)
    submit(queue, tmp_path, "source", seconds=1.0)
    submit(queue, tmp_path, "alone", seconds=0.3)  # needs nothing: runs beside the source, and frees its slot first
    submit(queue, tmp_path, "target", reads=str(tmp_path / "runs" / "source" / "best.pt"), seconds=0.1)
    queue.wait()
    source, alone, target = (record(tmp_path, n) for n in ("source", "alone", "target"))
    assert alone["start"] < source["end"] and source["start"] < alone["end"]  # overlapped
    assert target["ready"] and target["start"] >= source["end"]
    assert {r["threads"] for r in (source, alone, target)} == {"1"}
    assert (tmp_path / "logs" / "target.log").is_file()


def test_one_at_a_time_is_sequential(tmp_path):
    queue = JobQueue(1, tmp_path / "logs", poll_seconds=0.05)
    for name in ("a", "b"):
        submit(queue, tmp_path, name, seconds=0.3)
    queue.wait()
    assert record(tmp_path, "b")["start"] >= record(tmp_path, "a")["end"]


def test_a_failure_starts_nothing_more_and_exits_with_its_status(tmp_path, capsys):
    queue = JobQueue(2, tmp_path / "logs", threads=1, poll_seconds=0.05)
    submit(queue, tmp_path, "broken", seconds=0.1, status=3)
    submit(queue, tmp_path, "running", seconds=0.6)  # already running when the failure comes: it finishes
    submit(queue, tmp_path, "after", reads=str(tmp_path / "runs" / "broken" / "best.pt"))
    submit(queue, tmp_path, "later")
    with pytest.raises(SystemExit) as stop:
        queue.wait()
    assert stop.value.code == 3
    assert (tmp_path / "runs" / "running" / "best.pt").is_file()
    assert not (tmp_path / "runs" / "after").exists() and not (tmp_path / "runs" / "later").exists()
    err = capsys.readouterr().err
    assert "run broken failed (exit status 3" in err and "2 run(s) were not started" in err


def test_a_dependency_is_a_whole_run_name_in_a_path(tmp_path):
    queue = JobQueue(2, tmp_path / "logs")
    queue.submit("frozen", ["true"], [])
    queue.submit("frozen-32tok", ["true"], [])
    queue.submit("lpft", ["true"], ["runs/frozen-32tok/best.pt", "--epochs=1"])
    queue._link()
    assert [job.name for job in queue.queued[2].after] == ["frozen-32tok"]  # not "frozen", a prefix of it


def test_a_second_stage_submitted_first_still_waits_for_its_first(tmp_path):
    """--only=second,first: the queue orders by what each run reads, not by submission order."""
    queue = JobQueue(2, tmp_path / "logs", threads=1, poll_seconds=0.05)
    submit(queue, tmp_path, "second", reads=str(tmp_path / "runs" / "first" / "best.pt"), seconds=0.1)
    submit(queue, tmp_path, "first", seconds=0.5)
    queue.wait()
    second, first = record(tmp_path, "second"), record(tmp_path, "first")
    assert second["ready"] and second["start"] >= first["end"]


def test_runs_that_read_each_other_are_refused_before_anything_starts(tmp_path):
    queue = JobQueue(2, tmp_path / "logs", threads=1, poll_seconds=0.05)
    submit(queue, tmp_path, "a", reads=str(tmp_path / "runs" / "b" / "best.pt"))
    submit(queue, tmp_path, "b", reads=str(tmp_path / "runs" / "a" / "best.pt"))
    with pytest.raises(SystemExit, match="a -> b -> a.*cycle"):
        queue.wait()
    assert not (tmp_path / "runs").exists()


def test_jobs_option():
    assert split_jobs(["--only=a", "--jobs=2", "--epochs=1"]) == (["--only=a", "--epochs=1"], 2)
    assert split_jobs(["--jobs", "3"]) == ([], 3)
    assert split_jobs(["--epochs=1"]) == (["--epochs=1"], 1)
    with pytest.raises(SystemExit, match="--jobs 'two'"):
        split_jobs(["--jobs=two"])
    with pytest.raises(SystemExit, match="positive"):
        JobQueue(0, "logs")


def test_a_value_with_the_seed_suffix_reads_each_seeds_own_run(tmp_path, capsys):
    """A two-stage row warm-starts each seed from the first stage's run of the same seed."""
    from adapter4rec.experiments.launch import SEED_SUFFIX, sweep
    args = dict(output_dir=str(tmp_path), warm_start=f"runs/first{SEED_SUFFIX}/best.pt", epochs=1)
    sweep(str(tmp_path / "script" / "x.py"), args, {}, name="second", argv=["--dry_run", "--seeds", "1,2"])
    sweep(str(tmp_path / "script" / "x.py"), args, {}, name="second", argv=["--dry_run"])
    commands = [line for line in capsys.readouterr().out.splitlines() if line.startswith("+ ")]
    assert [c.split("--warm_start=")[1].split()[0] for c in commands] == [
        "runs/first-seed1/best.pt", "runs/first-seed2/best.pt", "runs/first/best.pt"]
    assert "--epochs=1" in commands[0] and "--run_name=second-seed2" in commands[1]


def test_ctrl_c_waits_for_the_running_runs_starts_no_other_and_exits_130(tmp_path, capsys, monkeypatch):
    import adapter4rec.experiments.launch as launch

    queue = JobQueue(1, tmp_path / "logs", poll_seconds=0.05)
    submit(queue, tmp_path, "running", seconds=0.5)
    submit(queue, tmp_path, "later")
    real_sleep = launch.time.sleep
    calls = {"n": 0}

    def interrupted(seconds):  # Ctrl-C lands while the queue polls its running job
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        real_sleep(seconds)
    monkeypatch.setattr(launch.time, "sleep", interrupted)
    with pytest.raises(SystemExit) as stop:
        queue.wait()
    assert stop.value.code == 130
    assert (tmp_path / "runs" / "running" / "best.pt").is_file()  # waited for, not orphaned
    assert not (tmp_path / "runs" / "later").exists()
    err = capsys.readouterr().err
    assert err.startswith("launcher: interrupted; running run(s) stopped (running), 1 not started")
