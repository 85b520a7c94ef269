"""Keyed stores of per-item backbone states: built once, then reused by every run and rank that needs them.

A record is one array whose first axis is the item index (row 0 = the padding item, zeros). Two stores with
one interface, `get_or_build(key, shape, dtype, fill)`:

- `DiskStore(cache_dir)`: `states-<kind>-<hash>.bin` (raw little-endian rows, memory-mapped read-only) plus a
  `.json` beside it holding the full key, shape, dtype, a BLAKE2b checksum of the bytes, the build time and
  the size. The key (a dict: backbone weights, inputs, layers, pooling, dtype, ...) hashes into the name, so a
  change of any of them is a different file (a miss), and an equal key is a hit. The `.json` is written last,
  after the data file is renamed into place, so it marks a complete record; a data file whose size or
  checksum does not match its `.json` (truncated, overwritten, disk error) is reported and rebuilt, never read.
  Under DDP local rank 0 of each node builds (the cache may be node-local), the others wait and then read.
- `MemoryStore`: the same in RAM, nothing written (tests, benchmarks, `cache_backbone()` without a store).

bf16 has no NumPy type: its rows are stored as int16 bit patterns and viewed back as torch.bfloat16.
"""
from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from adapter4rec import dist
from adapter4rec.atomic import atomic_path
from adapter4rec.errors import UserError

log = logging.getLogger(__name__)

STORE_VERSION = 1
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
_NUMPY = {"bf16": np.int16, "fp16": np.float16, "fp32": np.float32}  # bf16 travels as its bit pattern

# fill(write) computes the record: it calls write(first_row, rows) for consecutive blocks of rows 1..n
Fill = Callable[[Callable[[int, torch.Tensor], None]], None]


class CacheError(UserError, RuntimeError):
    """A cache that cannot be used or built as configured (a user error: the message says what to change)."""


def record_bytes(shape: tuple[int, ...], dtype: str) -> int:
    return int(np.prod(shape)) * np.dtype(_NUMPY[dtype]).itemsize


def key_digest(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:20]


def _view(array: np.ndarray, dtype: str) -> torch.Tensor:
    table = torch.from_numpy(array)
    return table.view(torch.bfloat16) if dtype == "bf16" else table


def _writer(table: torch.Tensor) -> Callable[[int, torch.Tensor], None]:
    """write(first_row, rows) into `table`, cast to its dtype (what a Fill calls)."""
    def write(first: int, rows: torch.Tensor) -> None:
        table[first:first + len(rows)] = rows.detach().to(table.dtype).cpu()
    return write


def on_device(table: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A record where the model runs: a CPU memory map stays mapped; on a GPU the rows are copied over."""
    return table if device.type == "cpu" else table.to(device)


def _checksum(path: Path, block: int = 1 << 24) -> str:
    digest = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as f:
        while chunk := f.read(block):
            digest.update(chunk)
    return digest.hexdigest()


class MemoryStore:
    """Records in RAM, never persisted; `report` describes the last record built."""

    def __init__(self):
        self.report: dict = {}

    def get_or_build(self, key: dict, shape: tuple[int, ...], dtype: str, fill: Fill) -> torch.Tensor:
        started = time.time()
        table = torch.zeros(shape, dtype=DTYPES[dtype])
        fill(_writer(table))
        self.report = {"kind": key.get("kind"), "hit": False, "build_seconds": round(time.time() - started, 2),
                       "bytes": record_bytes(shape, dtype), "path": None}
        return table


class DiskStore:
    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.report: dict = {}

    def paths(self, key: dict) -> tuple[Path, Path]:
        stem = f"states-{key.get('kind', 'record')}-{key_digest(key)}"
        return self.cache_dir / f"{stem}.bin", self.cache_dir / f"{stem}.json"

    def get_or_build(self, key: dict, shape: tuple[int, ...], dtype: str, fill: Fill) -> torch.Tensor:
        key = dict(key, store_version=STORE_VERSION, shape=list(shape), dtype=dtype)
        data, meta = self.paths(key)
        if dist.local_rank() == 0:
            problem = self._check(data, meta, key)
            if problem:
                if problem != "missing":
                    log.warning("state cache %s is %s: rebuilding it", data.name, problem)
                self._build(data, meta, key, shape, dtype, fill)
                self.report = dict(json.loads(meta.read_text()), hit=False, rebuilt_because=problem)
            else:
                self.report = dict(json.loads(meta.read_text()), hit=True)
        dist.barrier()
        if dist.local_rank() != 0:
            problem = self._check(data, meta, key)
            if problem:
                raise CacheError(f"state cache {data} is {problem} after local rank 0 built it: is cache_dir shared "
                                 f"by nodes that write it at the same time?")
            self.report = dict(json.loads(meta.read_text()), hit=True)
        # copy-on-write: a stray write stays in this process, never reaches the file
        array = np.memmap(data, dtype=_NUMPY[dtype], mode="c", shape=shape)
        self.report.update(path=str(data))
        return _view(array, dtype)

    @staticmethod
    def _check(data: Path, meta: Path, key: dict) -> str:
        """'' when the record can be read, else why not (missing / truncated / corrupt / ...)."""
        if not meta.is_file() or not data.is_file():
            return "missing"
        try:
            stored = json.loads(meta.read_text())
        except (OSError, ValueError):
            return "unreadable (its .json does not parse)"
        if stored.get("key") != key:
            return "for another key (hash collision or an edited .json)"
        size = data.stat().st_size
        if size != stored.get("bytes"):
            return f"truncated or overwritten ({size} bytes, {stored.get('bytes')} expected)"
        if _checksum(data) != stored.get("checksum"):
            return "corrupt (checksum mismatch)"
        return ""

    def _build(self, data: Path, meta: Path, key: dict, shape: tuple[int, ...], dtype: str, fill: Fill) -> None:
        started = time.time()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(data) as tmp:
            array = np.memmap(tmp, dtype=_NUMPY[dtype], mode="w+", shape=shape)  # zero-filled: row 0 stays padding
            table = _view(array, dtype)
            fill(_writer(table))
            array.flush()
            del array, table
        report = {"key": key, "bytes": data.stat().st_size, "checksum": _checksum(data),
                  "build_seconds": round(time.time() - started, 2)}
        with atomic_path(meta) as tmp_meta:
            tmp_meta.write_text(json.dumps(report, indent=1))
        log.info("state cache %s built in %.1f s: %s of shape %s (%.1f MB)", data.name, report["build_seconds"],
                 dtype, list(shape), report["bytes"] / 2**20)
