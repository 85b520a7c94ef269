"""A run's surroundings: the record of what produced it, its name, its log handlers and its random state
(who may write its folder, and when: run_folder.py)."""
from __future__ import annotations

import logging
import logging.handlers
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch
import torch.utils.deterministic

from adapter4rec import dist
from adapter4rec.config import Config

log = logging.getLogger("adapter4rec")  # the package's logger: module loggers are its children
LOG_FORMAT = logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%H:%M:%S")


def environment() -> dict:
    """What produced a run: library versions, the code's git commit (when available), processes."""
    import numpy
    import transformers
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True,
                                text=True, timeout=10).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        commit = None
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "numpy": numpy.__version__, "git_commit": commit, "world_size": dist.world_size(),
            "cuda": torch.version.cuda, "threads": torch.get_num_threads()}


def seed_everything(seed: int, deterministic: bool = True) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    if deterministic and torch.cuda.is_available():
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")  # what deterministic cuBLAS needs
    torch.use_deterministic_algorithms(deterministic, warn_only=True)  # an op without one warns, never fails
    # Deterministic mode also fills every new tensor with NaN, a debugging aid against reads of uninitialised
    # memory (which no correct kernel makes); it costs ~8% of a cached-state training step on a CPU.
    torch.utils.deterministic.fill_uninitialized_memory = False


def run_dir_of(cfg: Config) -> Path:
    encoder = "id" if cfg.item_tower == "id" else Path(cfg.item_encoder).name + ("+id" if cfg.item_tower == "fused"
                                                                                 else "")
    name = cfg.run_name or "-".join([cfg.stage, cfg.arch, cfg.loss, encoder, cfg.tune, f"seed{cfg.seed}"])
    return cfg.resolve(cfg.output_dir) / name


def setup_logging() -> None:
    """The package's log lines on stdout; on rank 0 also held in memory until attach_log_file names the run's
    log.txt, so a start that is refused (a finished or busy run folder) leaves that folder's log untouched."""
    log.handlers.clear()
    log.propagate = False
    handlers = [logging.StreamHandler(sys.stdout)]
    if dist.is_main():
        handlers.append(logging.handlers.MemoryHandler(capacity=1 << 30, flushLevel=logging.CRITICAL + 1))
    for handler in handlers:
        handler.setFormatter(LOG_FORMAT)
        log.addHandler(handler)
    log.setLevel(logging.INFO if dist.is_main() else logging.WARNING)  # module loggers are its children


def attach_log_file(run_dir: Path) -> None:
    """Rank 0: write the held lines, and every line from now on, to run_dir/log.txt (appended: a resumed run
    continues the log)."""
    held = [h for h in log.handlers if isinstance(h, logging.handlers.MemoryHandler)]
    if not dist.is_main() or not held:
        return
    file_handler = logging.FileHandler(run_dir / "log.txt", mode="a")
    file_handler.setFormatter(LOG_FORMAT)
    held[0].setTarget(file_handler)
    held[0].flush()
    log.removeHandler(held[0])
    log.addHandler(file_handler)


def user_error_types() -> tuple[type, ...]:
    """Exceptions that describe bad input (data, checkpoints, model folders, image stores, a diverged run), not a
    bug: an entry point prints their message alone. Imported here, late, so this module stays import-light."""
    from adapter4rec.checkpoint import CheckpointError
    from adapter4rec.data.files import DataError
    from adapter4rec.data.lmdb_images import ImageStoreError
    from adapter4rec.models.pretrained import CheckpointFolderError
    from adapter4rec.original import OriginalCheckpointError
    from adapter4rec.run_folder import RunFolderError
    from adapter4rec.states.store import CacheError
    return DataError, CheckpointError, CheckpointFolderError, ImageStoreError, OriginalCheckpointError, \
        CacheError, RunFolderError, FloatingPointError


def exit_on_user_error(main) -> None:
    """Run an entry point's `main()`. A user error (bad data, configuration, checkpoint; see user_error_types, and
    our own SystemExit messages) prints ONE line `adapter4rec: error: ...` on stderr and exits with status 2 —
    under torchrun from rank 0 only, so the message appears once; a real bug keeps its traceback.
    A4R_DEBUG=1 shows the traceback of user errors too."""
    debug = os.environ.get("A4R_DEBUG", "") not in ("", "0")
    try:
        main()
    except SystemExit as stop:
        if isinstance(stop.code, str) and not debug:
            _report_and_exit(stop.code)
        raise
    except user_error_types() as err:
        if debug:
            raise
        _report_and_exit(f"{type(err).__name__}: {err}")


def _report_and_exit(message: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        text = message if message.startswith("adapter4rec") else f"adapter4rec: error: {message}"
        print(text + "\n(A4R_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
    raise SystemExit(2)


class LineProgress:
    """tqdm's interface (update, set_postfix, close) for output that is not a terminal: one log line every
    `every` of the total or every `seconds`, whichever comes first (tqdm would write a carriage-return update per
    step into the log file: ~100 kB per epoch)."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", every: float = 0.1, seconds: float = 60.0,
                 final: bool = True):
        self.total, self.n, self.desc, self.final = total, initial, desc, final
        self.step_every, self.seconds = max(1, int(total * every)), seconds
        self.last_n, self.last_time, self.started, self.postfix = initial, time.time(), time.time(), ""

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n - self.last_n >= self.step_every or time.time() - self.last_time >= self.seconds:
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.final and self.n != self.last_n:
            self._line()

    def _line(self) -> None:
        rate = (self.n - self.last_n) / max(time.time() - self.last_time, 1e-9)
        log.info("%s: %d/%d (%.0f%%) %.2f it/s %s", self.desc, self.n, self.total, 100.0 * self.n / max(self.total, 1),
                 rate, self.postfix)
        self.last_n, self.last_time = self.n, time.time()


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0, quiet: bool = False):
    """A tqdm bar on a terminal, LineProgress lines in a log (stderr not a TTY), or nothing (disabled / not rank 0).
    quiet (evaluation): off a terminal, a line only every 60 s, none at the end."""
    from tqdm import tqdm
    if not (enabled and dist.is_main()):
        return tqdm(total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, leave=False)
    return LineProgress(total, initial, desc, every=1.0 if quiet else 0.1, final=not quiet)
