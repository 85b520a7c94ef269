"""A run's surroundings: the record of what produced it, its name, its log handlers and its random state
(who may write its folder, and when: folder.py)."""
from __future__ import annotations

import hashlib
import logging
import logging.handlers
import os
import platform
import random
import subprocess
import sys
from contextlib import contextmanager
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


def derived_seed(seed: int, name: str) -> int:
    """A 63-bit seed of (seed, name) alone: streams of different names do not overlap in any known way."""
    return int.from_bytes(hashlib.sha256(f"{seed}/{name}".encode()).digest()[:8], "little") & (2**63 - 1)


@contextmanager
def module_seed(seed: int, name: str):
    """Random draws inside come from the stream of (seed, name) alone, and the global stream outside is left as
    it was: a module's initial values do not depend on which modules were built before it (a fused run's user
    encoder starts as the content run it continues did)."""
    with torch.random.fork_rng(devices=[]):  # modules are built on the CPU, then moved
        torch.manual_seed(derived_seed(seed, name))
        yield


def seed_training_stream(seed: int, rank: int) -> None:
    """The stream that dropout and ID dropout draw from while training: one per rank (DDP ranks must not drop
    the same units), and independent of what the model holds, since building it draws from module streams."""
    stream = derived_seed(seed, f"train/rank{rank}")
    random.seed(stream)
    np.random.seed(stream % 2**32)
    torch.manual_seed(stream)


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
