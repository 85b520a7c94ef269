"""What the place_*.py scripts share: a placed folder's record and the digest that ties it to the weights.

A placed folder holds placed.json, written last, with the SHA-256 of the model.safetensors that passed the
script's checks; a folder whose files are missing or whose weights changed since is not placed, so the script
converts and checks again. (The scripts import this file from their own folder: pretrained_models/ is no
package, and the scripts run by path.)"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

MARKER = "placed.json"


def sha256(path: Path) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def placed_record(target: Path, required: tuple[str, ...]) -> dict | None:
    """The marker's record when `target` holds the marker, the weights and every `required` file, and its
    weights are the ones that were checked; None otherwise."""
    marker, weights = target / MARKER, target / "model.safetensors"
    if not all(p.is_file() for p in (marker, weights, *(target / name for name in required))):
        return None
    record = json.loads(marker.read_text())
    return record if record.get("weights_sha256") == sha256(weights) else None
