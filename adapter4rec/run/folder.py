"""Who may write a run folder, and what starting a run does with what the folder already holds.

A run owns its folder while it runs: an exclusive `flock` on `<run>/.lock`, held by rank 0 for the life of the
process. The kernel drops it when the process ends, however it ends, so a killed run never leaves it stuck; a
second start meanwhile refuses with one line naming the holder. (flock works on local file systems and on
NFS v4; on a file system without it a start says so and runs unlocked.)

What a start finds decides what it may do (`decide`); nothing in the folder is written before every check of
the run (data, source and warm-start checkpoints, the resume checkpoint) has passed (`commit`):
  nothing of a run's results      -> start afresh
  last.pt, no results.json        -> resume=auto continues it (resume.find_resume checks the settings)
  results.json, same settings     -> already done: report the stored results, write nothing
  anything else (results.json with other settings, resume=none over an existing run, best.pt that cannot be
  resumed)                        -> refused, unless overwrite=true, which deletes the old run's files first
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from adapter4rec import dist
from adapter4rec.atomic import write_text_atomic
from adapter4rec.checkpoint import prune_epoch_checkpoints
from adapter4rec.config import RUNTIME_KEYS, Config
from adapter4rec.errors import UserError

try:
    import fcntl
except ImportError:  # not on Windows: runs there are unlocked
    fcntl = None

log = logging.getLogger("adapter4rec")
LOCK_NAME = ".lock"
RESULT_FILES = ("results.json", "best.pt", "last.pt", "metrics.jsonl")  # and our epoch-N.pt: what overwrite deletes


class RunFolderError(UserError, RuntimeError):
    """A run folder that this start may not use as asked (held by another run, or holding one)."""


class FolderLock:
    """Rank 0's exclusive hold on a run folder; `release` (or the process ending) lets it go."""

    def __init__(self, run_dir: Path):
        self.path, self.handle = run_dir / LOCK_NAME, None

    def acquire(self) -> None:
        self.handle = open(self.path, "a+", encoding="utf-8")  # a+: never truncates the holder's note
        if fcntl is None:
            return
        try:
            fcntl.flock(self.handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self.handle.seek(0)
            holder = self.handle.read().strip() or "another process"
            self.release()
            raise RunFolderError(f"run folder {self.path.parent} is in use by another run ({holder}); wait for "
                                 f"it to end or choose another run_name") from None
        except OSError as err:  # a file system without flock
            log.warning("run folder %s cannot be locked (%s): two runs started there at once would mix files",
                        self.path.parent, err.strerror or err)
            return
        self.handle.seek(0)
        self.handle.truncate()
        self.handle.write(f"pid {os.getpid()} on {socket.gethostname()}, started "
                          f"{time.strftime('%Y-%m-%d %H:%M:%S')}\n")
        self.handle.flush()

    def release(self) -> None:
        if self.handle is not None:
            self.handle.close()  # closing the last descriptor drops the flock
            self.handle = None

    def __enter__(self) -> "FolderLock":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def holder_of(run_dir: Path) -> str | None:
    """Who holds the folder's lock now (its note), or None when no running run holds it."""
    path = run_dir / LOCK_NAME
    if fcntl is None or not path.is_file():
        return None
    with open(path, "a+", encoding="utf-8") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            return handle.read().strip() or "another process"
        except OSError:  # a file system without flock: nobody can be seen holding it
            return None
    return None  # closing the file dropped the shared lock


def check_finished(checkpoint: Path, key: str, results: bool = True) -> None:
    """A warm start continues a FINISHED run: refuse a checkpoint whose run folder has no results.json (the run
    is unfinished, or its best.pt may still change) or whose folder a running run holds (this run's own folder
    included). results=False (a source checkpoint, which may be a released file outside any run folder): only
    the running run is refused, whose best.pt may still change under this one."""
    folder = checkpoint.parent
    holder = holder_of(folder)
    if holder is not None:
        raise RunFolderError(f"{key}={checkpoint}: its run folder is in use by a running run ({holder}); this run "
                             f"reads a finished one (wait for it to end; a run cannot start from itself)")
    if results and not (folder / "results.json").is_file():
        raise RunFolderError(f"{key}={checkpoint}: its run folder has no results.json: the run is unfinished and "
                             f"its best.pt may still change; finish that run first (a warm start reads a finished run)")


@dataclass
class Verdict:
    action: str                  # fresh | resume | done | overwrite
    results: dict | None = None  # the stored results.json (done)


def claim(run_dir: Path) -> FolderLock:
    """Create the folder and take its lock (rank 0); every rank gets rank 0's error, if any, so none is left
    waiting in a collective. Also the writability check: the lock file is the first file written."""
    lock, error = FolderLock(run_dir), None
    if dist.is_main():
        try:
            run_dir.mkdir(parents=True, exist_ok=True)
            lock.acquire()
        except RunFolderError as err:
            error = str(err)
        except OSError as err:
            error = (f"adapter4rec: output directory {run_dir} is not writable ({err.strerror or err}"
                     f"{f': {err.filename}' if err.filename else ''}); set output_dir to a writable folder")
    error = dist.broadcast_object(error)
    if error and error.startswith("adapter4rec: "):
        raise SystemExit(error)
    if error:
        raise RunFolderError(error)
    return lock


def decide(run_dir: Path, cfg: Config) -> Verdict:
    """What this start does with the folder (rank 0 reads it; every rank gets the same verdict or error)."""
    verdict, error = None, None
    if dist.is_main():
        try:
            verdict = _decide(run_dir, cfg)
        except RunFolderError as err:
            error = str(err)
    verdict, error = dist.broadcast_object((verdict, error))
    if error:
        raise RunFolderError(error)
    return verdict


def _decide(run_dir: Path, cfg: Config) -> Verdict:
    finished, last = run_dir / "results.json", run_dir / "last.pt"
    # (an epoch-N.pt of ours never comes without best.pt, written first; one of the original code's is not a run)
    held = [name for name in ("results.json", "last.pt", "best.pt") if (run_dir / name).is_file()]
    if not held:
        return Verdict("fresh")
    if cfg.overwrite:
        return Verdict("overwrite")
    again = "set overwrite=true to delete it and train afresh, or choose another run_name"
    if finished.is_file():
        differ = differing_settings(run_dir / "config.json", cfg)
        if not differ and cfg.resume == "auto":
            return Verdict("done", json.loads(finished.read_text()))
        what = "other settings: " + ", ".join(differ[:6]) if differ else f"resume={cfg.resume}"
        raise RunFolderError(f"run folder {run_dir} holds a finished run (results.json) and this start has {what}; "
                             f"{again}")
    if last.is_file() and (cfg.resume == "auto" or cfg.resolve(cfg.resume) == last.resolve()):
        return Verdict("resume")
    if last.is_file():
        raise RunFolderError(f"run folder {run_dir} holds an unfinished run (last.pt) and this start has "
                             f"resume={cfg.resume}; resume=auto continues it, or {again}")
    raise RunFolderError(f"run folder {run_dir} holds {', '.join(held)} of an earlier run that never finished and "
                         f"cannot be resumed (no last.pt); {again}")


def differing_settings(config_file: Path, cfg: Config) -> list[str]:
    """`key: stored -> now` for every setting (runtime keys aside) in which `cfg` differs from a run's config.json;
    a key newer than the file counts as its default."""
    try:
        stored = json.loads(config_file.read_text())
    except (OSError, ValueError):
        return [f"{config_file.name}: unreadable"]
    defaults, now = dataclasses.asdict(Config()), dataclasses.asdict(cfg)
    return [f"{k}: {stored.get(k, defaults[k])!r} -> {v!r}" for k, v in sorted(now.items())
            if k not in RUNTIME_KEYS and stored.get(k, defaults[k]) != v]


def commit(run_dir: Path, cfg: Config, verdict: Verdict, environment: dict) -> None:
    """Rank 0, once every check has passed: delete the old run's files (overwrite), write config.json and
    environment.json. A resumed run's config.json is rewritten with the values that may change on resume."""
    if not dist.is_main():
        return
    if verdict.action == "overwrite":
        for name in RESULT_FILES:
            (run_dir / name).unlink(missing_ok=True)
        prune_epoch_checkpoints(run_dir, newest=-1, keep=0)  # every epoch-N.pt of ours (not a foreign one)
        log.warning("overwrite=true: the earlier run's results and checkpoints in %s are deleted", run_dir)
    write_text_atomic(run_dir / "config.json", json.dumps(dataclasses.asdict(cfg), indent=1))
    write_text_atomic(run_dir / "environment.json", json.dumps(environment, indent=1))


def trim_metrics(run_dir: Path, epoch: int) -> None:
    """Rank 0, on resume: keep metrics.jsonl's lines of the epochs before `epoch`. A run killed after an epoch's
    line was written but before its last.pt does that epoch again, and would otherwise log it twice."""
    path = run_dir / "metrics.jsonl"
    if not dist.is_main() or not path.is_file():
        return
    lines = path.read_text().splitlines()
    kept = [line for line in lines if line.strip() and json.loads(line).get("epoch", -1) < epoch]
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(line + "\n" for line in kept))
        log.info("metrics.jsonl: %d line(s) of epochs from %d on dropped (the resumed run does them again)",
                 len(lines) - len(kept), epoch)
