"""Entry points print a user error as one line and exit with status 2 (once under torchrun); A4R_DEBUG=1 shows the
traceback; a real bug keeps its traceback."""
from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest

from adapter4rec.config import REPO_ROOT
from tests.conftest import tiny_args

RUN = REPO_ROOT / "Downstream" / "Text" / "run.py"


def _env(**extra) -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", **extra)
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "A4R_DEBUG"):
        env.pop(key, None)
    env.update(extra)
    return env


@pytest.fixture
def bad_dataset(tiny_data, tmp_path):
    folder = tmp_path / "bad"
    folder.mkdir()
    lines = (tiny_data / "target" / "users.tsv").read_text().splitlines()
    user, items = lines[3].split("\t")
    lines[3] = f"{user}\t{items} NO-SUCH-ITEM"
    (folder / "users.tsv").write_text("\n".join(lines) + "\n")
    (folder / "items.tsv").write_bytes((tiny_data / "target" / "items.tsv").read_bytes())
    return folder


def test_data_error_is_one_line_and_status_2(tiny_bert, bad_dataset, tmp_path):
    args = tiny_args(tiny_bert, bad_dataset, tmp_path / "runs")
    proc = subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True, env=_env(), timeout=120)
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("adapter4rec: error:")]
    assert len(errors) == 1 and "users.tsv:4:" in errors[0] and "NO-SUCH-ITEM" in errors[0]
    debug = subprocess.run([sys.executable, str(RUN), *args], capture_output=True, text=True,
                           env=_env(A4R_DEBUG="1"), timeout=120)
    assert debug.returncode != 0 and "Traceback" in debug.stderr and "DataError" in debug.stderr


def test_config_error_is_one_line_and_status_2(tmp_path):
    proc = subprocess.run([sys.executable, str(RUN), "--lr=-1"], capture_output=True, text=True, env=_env(),
                          timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.count("lr=-1.0 is invalid") == 1


def test_under_torchrun_the_message_appears_once(tiny_bert, bad_dataset, tmp_path):
    args = tiny_args(tiny_bert, bad_dataset, tmp_path / "runs", device="cpu")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(RUN), *args]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=_env(), timeout=150)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert out.count("NO-SUCH-ITEM") == 1, out[-3000:]
    assert "Traceback (most recent call last)" not in out.split("NO-SUCH-ITEM")[0]


LAUNCHER = REPO_ROOT / "Downstream" / "Text" / "script" / "frozen.py"


@pytest.mark.parametrize("bad", ["data", "config"])
def test_through_a_launcher_a_user_error_is_the_childs_line_and_status_2(tiny_bert, bad_dataset, tmp_path, bad):
    # the launcher runs torchrun (adapter4rec.run.torchrun), whose own ChildFailedError traceback (exit 1) would
    # bury the child's one line; a typo in a setting is a config error through the same path
    args = tiny_args(tiny_bert, bad_dataset, tmp_path / "runs", device="cpu")
    if bad == "config":
        args.append("--dropout=1.5")
    proc = subprocess.run([sys.executable, str(LAUNCHER), *args], capture_output=True, text=True, env=_env(),
                          timeout=150, cwd=tmp_path)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2, out[-3000:]
    assert "Traceback" not in out and "ChildFailedError" not in out, out[-3000:]
    errors = [line for line in out.splitlines() if line.startswith("adapter4rec: ")]  # error: / config:
    assert len(errors) == 1 and ("NO-SUCH-ITEM" if bad == "data" else "dropout=1.5") in errors[0], out[-3000:]
    assert "launcher: run frozen failed (exit status 2)" in out


def test_ctrl_c_through_a_launcher_stops_the_run_with_one_line_and_status_130(tiny_bert, tiny_data, tmp_path):
    import signal

    # Ctrl-C reaches the whole foreground process group: launcher, torchrun and the run
    args = tiny_args(tiny_bert, tiny_data / "target", tmp_path / "runs", device="cpu", epochs=200, source_checkpoint="",
                     save_every_steps=1)
    proc = subprocess.Popen([sys.executable, str(LAUNCHER), *args], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env=_env(), cwd=tmp_path, start_new_session=True)
    lines = []
    for line in proc.stdout:  # training: its first epoch is over
        lines.append(line)
        if "epoch 0 loss" in line:
            break
    os.killpg(proc.pid, signal.SIGINT)
    rest, _ = proc.communicate(timeout=120)
    out = "".join(lines) + rest
    assert proc.returncode == 130, out[-3000:]
    assert "Traceback" not in out and "SignalException" not in out, out[-3000:]
    assert "launcher: run frozen was interrupted (exit status 130)" in out
    assert (tmp_path / "runs" / "frozen" / "last.pt").is_file()


def test_a_real_bug_keeps_its_traceback(monkeypatch):
    from adapter4rec.errors import exit_on_user_error

    def broken():
        raise KeyError("a bug")
    with pytest.raises(KeyError):
        exit_on_user_error(broken)


def test_progress_off_a_terminal_is_a_few_log_lines():
    import logging

    from adapter4rec.progress import LineProgress, log

    class Collect(logging.Handler):  # the package logger may not propagate (setup_logging), so no caplog
        def __init__(self):
            super().__init__()
            self.lines = []

        def emit(self, record):
            self.lines.append(record.getMessage())
    collect, level = Collect(), log.level
    log.addHandler(collect)
    log.setLevel(logging.INFO)
    try:
        bar = LineProgress(total=1000, desc="epoch 0")
        for _ in range(1000):
            bar.update(1)
            bar.set_postfix(loss="1.0")
        bar.close()
        lines = list(collect.lines)
        assert len(lines) == 10 and lines[-1].startswith("epoch 0: 1000/1000 (100%)") and "loss=1.0" in lines[-1]
        assert re.search(r"^epoch 0: 100/1000 \(10%\) [\d.]+ it/s, \d+s left loss=1.0$", lines[0]), lines[0]
        assert " left" not in lines[-1]  # the epoch is done
        collect.lines.clear()
        quiet = LineProgress(total=50, desc="valid", every=1.0, final=False)
        for _ in range(49):
            quiet.update(1)
        quiet.close()
        assert not collect.lines
    finally:
        log.removeHandler(collect)
        log.setLevel(level)


def test_durations_read_as_a_person_plans():
    from adapter4rec.progress import duration

    assert [duration(s) for s in (0.4, 41, 161, 3600, 3900 + 59)] == ["0s", "41s", "2m41s", "1h00m", "1h05m"]


def test_ctrl_c_outside_the_training_steps_is_one_line_and_status_130(capsys):
    from adapter4rec.errors import exit_on_user_error

    def interrupted():
        raise KeyboardInterrupt
    with pytest.raises(SystemExit) as stop:
        exit_on_user_error(interrupted)
    assert stop.value.code == 130
    assert capsys.readouterr().err.startswith("adapter4rec: interrupted (Ctrl-C) outside the training steps")
