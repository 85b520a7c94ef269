"""Checkpoints: atomic writes, and loading with checked keys and shapes.

A checkpoint is a plain dict: {"format", "config" (asdict, plain types), "model" (state dict), "epoch",
"metrics"} — loadable with torch.load(weights_only=True).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

FORMAT = "adapter4rec/1"


class CheckpointError(RuntimeError):
    pass


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a crash at any moment
    leaves either the old file or the new one, never a torn one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_checkpoint(path: Path) -> dict:
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt zip archives
        raise CheckpointError(f"checkpoint {path} cannot be read ({type(err).__name__}: {err}); "
                              f"is it truncated or not a torch checkpoint?") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or ckpt.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {path} is not an adapter4rec checkpoint (format {FORMAT!r} "
                              f"with a 'model' entry)")
    return ckpt


# settings that must match between a source checkpoint and the model it is loaded into
MUST_MATCH = ("item_tower", "embedding_dim", "num_blocks", "num_heads", "max_seq_len")


def load_source(model: torch.nn.Module, path: Path, config: dict) -> dict:
    """Load a source-domain checkpoint into `model` (before adapters are added).

    Every model key must be present with the same shape, and the checkpoint may hold no extra key; the
    error lists what does not fit. Returns the checkpoint's stored config."""
    ckpt = read_checkpoint(path)
    source_cfg = ckpt.get("config", {})
    if source_cfg.get("item_tower") == "id" or config.get("item_tower") == "id":
        raise CheckpointError(f"{path}: an ID item tower cannot transfer to a new domain (its items differ); "
                              f"use item_tower=modal in both stages")
    for key in MUST_MATCH:
        if key in source_cfg and source_cfg[key] != config.get(key):
            raise CheckpointError(f"{path}: source {key}={source_cfg[key]!r} but this run has "
                                  f"{key}={config.get(key)!r}; they must match to transfer")
    own = model.state_dict()
    state = ckpt["model"]
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    if missing or unexpected or shapes:
        enc = source_cfg.get("item_encoder", "?")
        raise CheckpointError(
            f"{path} does not fit this model (source item_encoder={enc!r}, this run "
            f"item_encoder={config.get('item_encoder')!r}): {len(missing)} missing key(s) {missing[:4]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:4]}, {len(shapes)} shape mismatch(es) {shapes[:3]}")
    model.load_state_dict(state, strict=True)
    return source_cfg


def load_run_weights(model: torch.nn.Module, ckpt: dict) -> None:
    """Load a run's own checkpoint into a model built the same way (adapters added, trainability set).

    A 'trainable' checkpoint (PEFT) must hold exactly the model's trainable parameters; a 'full' one every key."""
    state = ckpt["model"]
    if ckpt.get("kind", "full") == "full":
        model.load_state_dict(state, strict=True)
        return
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(trainable - set(state)), sorted(set(state) - trainable)
    if missing or extra:
        raise CheckpointError(f"adapter checkpoint does not match this model's trainable parameters: "
                              f"{len(missing)} missing {missing[:4]}, {len(extra)} unexpected {extra[:4]} "
                              f"(built with adapter={ckpt.get('config', {}).get('adapter')!r}?)")
    model.load_state_dict(state, strict=False)
