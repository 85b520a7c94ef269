"""A checkpoint as a .safetensors file: the weights as plain tensors (no pickle, so safe to load from anyone, and
readable by any safetensors tool), everything else of the checkpoint (format, config, kind, inputs, epoch, metrics)
as JSON in the file's metadata under "adapter4rec". read_checkpoint reads it like a .pt one, so an export in this
format serves as a source checkpoint or warm start too."""
from __future__ import annotations

import json
from pathlib import Path

from adapter4rec.atomic import atomic_path
from adapter4rec.checkpoint.files import FORMAT, CheckpointError, ForeignCheckpointError

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
                                     f"{METADATA_KEY!r} metadata; python -m adapter4rec.export writes one)", tensors)
    try:
        ckpt = json.loads(metadata[METADATA_KEY])
    except ValueError:
        raise CheckpointError(f"checkpoint {path}: its {METADATA_KEY!r} metadata is not JSON") from None
    if not isinstance(ckpt, dict) or ckpt.get("format") != FORMAT:
        raise ForeignCheckpointError(f"checkpoint {path} is not an adapter4rec checkpoint (format {FORMAT!r})", tensors)
    return {**ckpt, "model": tensors}
