"""Exact resume: what `last.pt` holds and how a run continues from it, mid-epoch included.

last.pt = model weights (only the trainable ones for PEFT runs: the frozen rest is rebuilt from the source
checkpoint), optimizer, grad scaler, progress (epoch, batches done in it, running loss, best metric so far,
early-stopping counter, training seconds) and, for EVERY rank, its random-number state: python, numpy,
torch CPU (dropout), CUDA, the negative-sampling generator, and the sampler generator as it was at the
start of the epoch (the epoch's order is regenerated from it and the batches already done are skipped).
With the same seed on CPU in one process, a killed-and-resumed run ends with bit-identical metrics.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from adapter4rec import dist
from adapter4rec.config import RUNTIME_KEYS, from_dict
from adapter4rec.checkpoint import (CheckpointError, check_pinned, checkpoint_of, load_run_weights, read_checkpoint,
                                    save_atomic)

log = logging.getLogger(__name__)

# config keys that may differ between the interrupted run and the resumed one
# (nonfinite: a run stopped by a NaN loss may be continued with nonfinite=skip; epochs: only under a constant
# learning-rate schedule, see find_resume)
MAY_CHANGE = RUNTIME_KEYS | {"epochs", "patience", "deterministic"}


@dataclass
class Progress:
    epoch: int = 0
    step: int = 0              # batches finished in `epoch`
    loss_sum: float = 0.0      # summed loss of those batches
    best: float = -math.inf
    best_epoch: int = -1
    stale: int = 0             # evaluations without improvement
    seconds: float = 0.0       # training time spent before this process started
    skipped: int = 0           # batches of `epoch` whose update was skipped (nonfinite=skip)
    skipped_total: int = 0     # the same over the whole run
    skipped_in_a_row: int = 0  # consecutive skipped updates (a diverged run skips every batch: stop it)
    stopped_early: bool = False  # patience ran out: training is over, testing is what is left


def rng_state(negatives: torch.Generator, sampler_epoch_state: torch.Tensor | None) -> dict:
    name, keys, pos, has_gauss, cached = np.random.get_state()
    numpy_state = [name, torch.from_numpy(keys.astype(np.int64)), pos, has_gauss, cached]  # weights_only-safe
    return {"python": random.getstate(), "numpy": numpy_state, "torch": torch.get_rng_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
            "negatives": negatives.get_state(), "sampler_epoch": sampler_epoch_state}


def set_rng_state(state: dict, negatives: torch.Generator) -> None:
    random.setstate(state["python"])
    name, keys, pos, has_gauss, cached = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), pos, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    negatives.set_state(state["negatives"])


def save_last(path: Path, model, optimizer, scaler, cfg, progress: Progress, rng: dict) -> None:
    """Collective: every rank sends its RNG state; rank 0 writes last.pt atomically."""
    all_rng = dist.all_gather_objects(rng)
    if not dist.is_main():
        return
    save_atomic(checkpoint_of(model, cfg, optimizer=optimizer.state_dict(), scaler=scaler.state_dict(),
                              progress=dataclasses.asdict(progress), rng=all_rng), path)


def find_resume(run_dir: Path, cfg) -> dict | None:
    """The checkpoint to continue from: resume=none -> None; auto -> run_dir/last.pt when it exists and the run
    has not finished; a path -> that file (errors are reported, never silently ignored)."""
    if cfg.resume == "none":
        return None
    path = run_dir / "last.pt" if cfg.resume == "auto" else cfg.resolve(cfg.resume)
    if cfg.resume == "auto" and (not path.is_file() or (run_dir / "results.json").is_file()):
        return None  # nothing to continue, or a finished run that is being run again from the start
    ckpt = read_checkpoint(path, expected="last.pt")
    if "progress" not in ckpt or "rng" not in ckpt:
        raise CheckpointError(f"{path} is not a resumable checkpoint (no progress / rng state)")
    stored = ckpt["config"]
    defaults = dataclasses.asdict(type(cfg)())  # a key newer than the checkpoint counts as its default
    changed = {k: (stored.get(k, defaults[k]), v) for k, v in dataclasses.asdict(cfg).items()
               if k not in MAY_CHANGE and stored.get(k, defaults[k]) != v}
    if changed:
        listed = sorted(changed.items())
        more = f" (and {len(listed) - 8} more)" if len(listed) > 8 else ""
        raise CheckpointError(f"{path} was written by a different configuration; resuming would mix runs: "
                              + ", ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in listed[:8]) + more)
    check_epochs(path, stored.get("epochs", defaults["epochs"]), cfg)
    if len(ckpt["rng"]) != dist.world_size():
        raise CheckpointError(f"{path} was written by {len(ckpt['rng'])} process(es), this run has "
                              f"{dist.world_size()}: the data order cannot be continued exactly")
    return ckpt


def check_epochs(path: Path, stored_epochs: int, cfg) -> None:
    """epochs may change on resume under a constant schedule (training just runs longer or shorter); a linear or
    cosine schedule is stretched over epochs x steps per epoch (optim.schedule_factor), so a new `epochs` would
    silently change the learning rate of every step still to come, to a run that no single setting describes."""
    if cfg.lr_schedule == "constant" or stored_epochs == cfg.epochs:
        return
    afresh = "overwrite=true" + (" resume=auto" if cfg.resume not in ("auto", "none") else "")
    raise CheckpointError(f"{path} was written by a run with epochs={stored_epochs} and this one has "
                          f"epochs={cfg.epochs}: lr_schedule={cfg.lr_schedule} decays the learning rate over "
                          f"epochs x steps per epoch, so continuing would change the learning rate of every step "
                          f"left to a schedule neither run has; keep epochs={stored_epochs} to continue exactly, or "
                          f"start afresh with epochs={cfg.epochs} {afresh}")


def restore(ckpt: dict, model, optimizer, scaler, negatives: torch.Generator) -> tuple[Progress, dict]:
    """Load weights, optimizer and scaler; return the progress and this rank's RNG state (applied later,
    right before training continues, so nothing in between consumes random numbers)."""
    check_pinned(ckpt, from_dict(ckpt["config"]), Path("last.pt"))  # the source / first stage it started from
    load_run_weights(model, ckpt)
    optimizer.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    progress = Progress(**ckpt["progress"])
    log.info("resuming at epoch %d after %d batches (best %s = %.4f at epoch %d)", progress.epoch, progress.step,
             ckpt["config"].get("select_metric"), progress.best, progress.best_epoch)
    return progress, ckpt["rng"][dist.rank()]


class StopSignals:
    """SIGTERM (SLURM / Kubernetes preemption, `timeout`) and SIGINT (Ctrl-C) ask the run to stop: the current
    step finishes, last.pt is written, and the process exits with 128 + the signal's number. `requested()` is
    all-reduced, so under torchrun every rank stops after the same step even if only one got the signal.
    A second signal of the same kind falls back to the default behaviour (a second Ctrl-C interrupts at once)."""

    def __init__(self):
        self.received: int | None = None
        self.previous: dict = {}

    def __enter__(self) -> "StopSignals":
        import signal
        import threading
        if threading.current_thread() is threading.main_thread():  # handlers can only be set there
            for sig in (signal.SIGTERM, signal.SIGINT):
                self.previous[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc) -> None:
        import signal
        for sig, handler in self.previous.items():
            signal.signal(sig, handler)

    def _note(self, signum, frame) -> None:
        import signal
        self.received = signum
        signal.signal(signum, self.previous.get(signum, signal.SIG_DFL))

    def requested(self) -> bool:
        flag = torch.tensor([float(self.received or 0)])
        return bool(dist.all_reduce_sum(flag).item() > 0)

    def stop(self, where: str) -> None:
        """Call after last.pt is written: log the line a person (or a job scheduler's log) reads, then exit."""
        import signal
        number = self.received or signal.SIGTERM
        name = signal.Signals(number).name if self.received else "a signal on another rank"
        log.warning("stopped by %s %s; last.pt is written: start the same command again to continue exactly",
                    name, where)
        raise SystemExit(128 + int(number))
