"""Checkpoint files: our format, atomic writes, reading with one-line errors, epoch copies, pinned inputs.

A checkpoint is a plain dict: {"format", "config" (asdict, plain types), "kind" (full | trainable), "model"
(state dict), "inputs" (the weight files it was built over, by checksum), "epoch", "metrics"}, loadable with
torch.load(weights_only=True). An export may also be a .safetensors file: the weights as plain tensors (no pickle,
safe to load from anyone, readable by any safetensors tool), the rest as JSON in its metadata under "adapter4rec";
read_checkpoint reads it like a .pt one, so it serves as a source checkpoint or warm start too.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import re
import shutil
import warnings
from pathlib import Path

import torch

from adapter4rec.adapters.trainable import trainable_state
from adapter4rec.atomic import atomic_path
from adapter4rec.config import Config
from adapter4rec.data.store import file_checksum
from adapter4rec.errors import UserError

FORMAT = "adapter4rec/1"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
EPOCH_FILE = re.compile(r"epoch-(\d+)\.pt")


class CheckpointError(UserError, RuntimeError):
    pass


class ForeignCheckpointError(CheckpointError):
    """A readable torch file that is not in our format (e.g. the original code's `epoch-N.pt`); `contents`
    holds what was read, so a caller that knows the other format need not read the file again."""

    def __init__(self, message: str, contents=None):
        super().__init__(message)
        self.contents = contents


# the files a run reads weights from and does not save itself (a PEFT run's frozen part, a warm start's first
# stage): each is pinned in the run's checkpoints by its checksum, so a finished run is rebuilt from exactly them
PINNED_INPUTS = ("source_checkpoint", "warm_start")


def pinned_inputs(cfg: Config) -> dict:
    """{key: {"path", "checksum"}} of the weight files this run reads (PINNED_INPUTS), as they are now."""
    return {key: {"path": getattr(cfg, key), "checksum": file_checksum(cfg.resolve(getattr(cfg, key)))}
            for key in PINNED_INPUTS if getattr(cfg, key) and cfg.resolve(getattr(cfg, key)).is_file()}  # a missing
    #                                                     one is refused by the loader, naming it


def check_pinned(ckpt: dict, cfg: Config, where: Path) -> None:
    """Refuse (one line naming the file) when a weight file the run was built from has changed, moved or gone
    since: rebuilding the run would silently give another model. Checkpoints written before pinning pass."""
    for key, pinned in ckpt.get("inputs", {}).items():
        path = cfg.resolve(pinned["path"])
        now = file_checksum(path) if path.is_file() else None
        if now != pinned["checksum"]:
            state = "no longer exists" if now is None else "has changed since (retrained or replaced)"
            raise CheckpointError(f"{where} was built over {key}={pinned['path']}, which {state}; the run cannot be "
                                  f"rebuilt as it was trained (its own checkpoint holds only what it trained): "
                                  f"restore that file, or train this run again")


def checkpoint_of(model: torch.nn.Module, cfg: Config, full: bool = False, **fields) -> dict:
    """The one shape of our checkpoints (best.pt, epoch-N.pt, last.pt, an export): format, config, kind and
    weights (a PEFT run's trainable parameters, loaded over its source checkpoint; otherwise, or with full=True,
    every weight), plus `fields` (epoch and metrics; last.pt's optimizer, progress and random state)."""
    kind = "full" if full or cfg.tune != "peft" else "trainable"
    return {"format": FORMAT, "config": dataclasses.asdict(cfg), "kind": kind,
            "source_checkpoint": cfg.source_checkpoint, "inputs": getattr(model, "pinned_inputs", {}),
            "model": model.state_dict() if kind == "full" else trainable_state(model), **fields}


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a crash at any moment
    leaves either the old file or the new one, never a torn one. The temporary file is removed on failure;
    a full disk is reported as such (OSError ENOSPC), naming the file and the free space."""
    try:
        with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as handle:
            torch.save(obj, handle)
    except OSError as err:
        if err.errno in DISK_FULL:
            raise OSError(err.errno, f"disk full (no space left on device) while writing checkpoint {path}; "
                                     f"{_free_space(path.parent)} free in {path.parent}. The previous "
                                     f"{path.name}, if any, is intact: free space, lower keep_last, or set "
                                     f"output_dir elsewhere, then start the run again to resume") from err
        raise


def _free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB"
    except OSError:
        return "unknown space"


def epoch_path(run_dir: Path, epoch: int) -> Path:
    return run_dir / f"epoch-{epoch}.pt"


def prune_epoch_checkpoints(run_dir: Path, newest: int, keep: int) -> list[Path]:
    """Delete the epoch-N.pt files outside the `keep` epochs ending at `newest`; returns what was deleted.

    Call only once epoch-{newest}.pt is written, so a failed save never leaves fewer files than before.
    A number above `newest` can only come from an earlier run in the same folder that was trained afresh
    (a resumed run never gets ahead of its files); it is deleted too, or it would pass for the newest.
    Only our own files go: the original code also names its checkpoints epoch-N.pt, and one placed here
    is left alone."""
    removed = []
    for path in sorted(run_dir.glob("epoch-*.pt")):
        match = EPOCH_FILE.fullmatch(path.name)
        if match and not newest - keep < int(match.group(1)) <= newest and _is_ours(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _is_ours(path: Path) -> bool:
    try:  # mmap: the tensors are not read, only the pickled structure
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: not provably ours, so not ours to delete
        return False
    return isinstance(ckpt, dict) and ckpt.get("format") == FORMAT


def read_checkpoint(path: Path, expected: str = "best.pt") -> dict:
    """Read one of our checkpoints; every failure is a one-line CheckpointError naming the file. `expected` is the
    file a run folder holds for this use (best.pt; last.pt to resume), suggested when `path` is a folder."""
    if path.is_dir():
        inside = path / expected
        held = sorted(p.name for p in path.glob("*.pt"))[:4]
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file; " + (
            f"give the file inside it: {inside}" if inside.is_file() else
            f"it holds no {expected} (.pt files there: {', '.join(held) or 'none'}); give a checkpoint file"))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    if path.suffix == SUFFIX:  # an export for other tools: the same dict, weights without pickle
        return read_safetensors(path)
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt zip archives
        raise CheckpointError(f"checkpoint {path} cannot be read ({_load_failure(err, path)}); "
                              f"is it truncated or not a torch checkpoint?") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or ckpt.get("format") != FORMAT:
        raise ForeignCheckpointError(f"checkpoint {path} is not an adapter4rec checkpoint (format {FORMAT!r} "
                                     f"with a 'model' entry)", ckpt)
    return ckpt


def _load_failure(err: Exception, path: Path) -> str:
    """torch.load's reason in one short line: its multi-line weights_only message is advice about loading the file
    with weights_only=False (arbitrary code), not about the file; its specific part is the unpickler's own error."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        first = detail[0].strip().split(". ")[0].rstrip(".") if detail else "refused"
        text = f"not a weights-only torch file: {first}"
    elif not text.strip():
        text = "the file is empty" if path.stat().st_size == 0 else "the data ends early"
    else:
        text = text.strip().splitlines()[0].split(". ")[0].rstrip(".")
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(err).__name__}: {text}"


# ------------------------------------------------------------------ the same checkpoint as a .safetensors file
SUFFIX = ".safetensors"
METADATA_KEY = "adapter4rec"


def write_safetensors(ckpt: dict, path: Path) -> None:
    """Atomically (temporary file, fsync, rename). Tensors that share memory (tied weights) are stored as copies:
    safetensors holds no aliasing; loading ties nothing either, as load_state_dict copies into the model."""
    from safetensors.torch import save_file

    rest = {key: value for key, value in ckpt.items() if key != "model"}
    tensors = {name: tensor.detach().clone().contiguous() for name, tensor in ckpt["model"].items()}
    with atomic_path(path, fsync=True) as tmp:
        save_file(tensors, str(tmp), metadata={METADATA_KEY: json.dumps(rest)})


def read_safetensors(path: Path) -> dict:
    """The checkpoint dict, as read_checkpoint returns it from a .pt file; one-line CheckpointError otherwise."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = handle.metadata() or {}
            tensors = {name: handle.get_tensor(name) for name in handle.keys()}
    except Exception as err:  # safetensors raises its own error types for a torn or foreign header
        reason = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        raise CheckpointError(f"checkpoint {path} cannot be read as safetensors ({type(err).__name__}: {reason}); "
                              f"is it truncated?") from None
    if METADATA_KEY not in metadata:
        raise ForeignCheckpointError(f"checkpoint {path} is a safetensors file but not an adapter4rec checkpoint (no "
                                     f"{METADATA_KEY!r} metadata; python -m adapter4rec export writes one)", tensors)
    try:
        ckpt = json.loads(metadata[METADATA_KEY])
    except ValueError:
        raise CheckpointError(f"checkpoint {path}: its {METADATA_KEY!r} metadata is not JSON") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ForeignCheckpointError(f"checkpoint {path} is not an adapter4rec checkpoint (format {FORMAT!r})", tensors)
    return {**ckpt, "model": tensors}
