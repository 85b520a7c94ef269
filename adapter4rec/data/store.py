"""The item store: keyed per-item records computed once, then reused by every run and rank that needs them.

Every per-item table this project keeps on disk goes through it: token ids (build.token_table), decoded pixels
(build.pixel_table) and the frozen backbone's states (states/layers.py). A record is one array whose first axis is
the item index (row 0 = the padding item). Two stores with one interface:

- `get_or_build(key, shape, dtype, fill)`: fill(write) writes rows in blocks (write(first_row, rows)), so a table
  larger than memory streams to disk; it may return a dict of facts about what it built (counts of missing
  images, truncated texts), kept with the record and given back on every hit as `report["facts"]`.
- `get_or_compute(key, dtype, compute)`: compute() -> (table, facts), for a table whose shape is known only once
  computed (token ids: as wide as the longest text).

`DiskStore(cache_dir)`: `<kind>-<hash>.bin` (raw little-endian rows, memory-mapped read-only) plus a `.json`
beside it holding the full key, shape, dtype, facts, a BLAKE2b checksum of the bytes, the build time and the size.
The key (a dict: input files, backbone weights, layers, pooling, dtype, ...) hashes into the name, so a change of
any of them is a different file (a miss), and an equal key is a hit. The `.json` is written last, after the data
file is renamed into place, so it marks a complete record; a data file whose size or checksum does not match its
`.json` (truncated, overwritten, disk error) is reported and rebuilt, never read. A build that fails (bad input)
leaves the previous files as they were. Under DDP local rank 0 of each node builds (the cache may be node-local),
the others wait and then read. `MemoryStore`: the same in RAM, nothing written (tests, benchmarks).

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
DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32, "int32": torch.int32,
          "uint8": torch.uint8}
_NUMPY = {"bf16": np.int16, "fp16": np.float16, "fp32": np.float32, "int32": np.int32,  # bf16: its bit pattern
          "uint8": np.uint8}

# fill(write) computes the record: it calls write(first_row, rows) for blocks of rows; returns facts or None
Fill = Callable[[Callable[[int, torch.Tensor], None]], "dict | None"]
# compute() -> (the whole table, facts): for a table whose shape is known only once it is computed
Compute = Callable[[], "tuple[torch.Tensor, dict]"]


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


def file_checksum(path: Path, block: int = 1 << 24) -> str:
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
        facts = fill(_writer(table)) or {}
        self.report = {"kind": key.get("kind"), "hit": False, "build_seconds": round(time.time() - started, 2),
                       "bytes": record_bytes(shape, dtype), "path": None, "facts": facts}
        return table

    def get_or_compute(self, key: dict, dtype: str, compute: Compute) -> torch.Tensor:
        table, facts = compute()
        return self.get_or_build(key, tuple(table.shape), dtype, _whole(table, facts))


def _whole(table: torch.Tensor, facts: dict) -> Fill:
    def fill(write):
        write(0, table)
        return facts
    return fill


class DiskStore:
    def __init__(self, cache_dir: Path):
        self.cache_dir = Path(cache_dir)
        self.report: dict = {}

    def paths(self, key: dict) -> tuple[Path, Path]:
        stem = f"{key.get('kind', 'record')}-{key_digest(key)}"
        return self.cache_dir / f"{stem}.bin", self.cache_dir / f"{stem}.json"

    def get_or_build(self, key: dict, shape: tuple[int, ...], dtype: str, fill: Fill) -> torch.Tensor:
        key = dict(key, store_version=STORE_VERSION, shape=list(shape), dtype=dtype)
        return self._get(key, dtype, lambda: (shape, fill))

    def get_or_compute(self, key: dict, dtype: str, compute: Compute) -> torch.Tensor:
        """As get_or_build; the shape is the computed table's (kept in the `.json`, not in the key)."""
        def plan():
            table, facts = compute()
            return tuple(table.shape), _whole(table, facts)
        return self._get(dict(key, store_version=STORE_VERSION, dtype=dtype), dtype, plan)

    def _get(self, key: dict, dtype: str, plan) -> torch.Tensor:
        """The record of `key`: read, or built from plan() -> (shape, fill) by local rank 0 of the node."""
        key = json.loads(json.dumps(key))  # as the .json gives it back (tuples become lists)
        data, meta = self.paths(key)
        if dist.local_rank() == 0:
            problem = self._check(data, meta, key)
            if problem:
                if problem != "missing":
                    log.warning("cache %s is %s: rebuilding it", data.name, problem)
                self._build(data, meta, key, dtype, *plan())
                self.report = dict(json.loads(meta.read_text()), hit=False, rebuilt_because=problem)
            else:
                self.report = dict(json.loads(meta.read_text()), hit=True)
        dist.barrier()
        if dist.local_rank() != 0:
            problem = self._check(data, meta, key)
            if problem:
                raise CacheError(f"cache {data} is {problem} after local rank 0 built it: is cache_dir shared by "
                                 f"nodes that write it at the same time?")
            self.report = dict(json.loads(meta.read_text()), hit=True)
        # copy-on-write: a stray write stays in this process, never reaches the file
        array = np.memmap(data, dtype=_NUMPY[dtype], mode="c", shape=tuple(self.report["shape"]))
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
        if size != stored.get("bytes") or size != record_bytes(tuple(stored.get("shape", [-1])), key["dtype"]):
            return f"truncated or overwritten ({size} bytes, {stored.get('bytes')} expected)"
        if file_checksum(data) != stored.get("checksum"):
            return "corrupt (checksum mismatch)"
        return ""

    def _build(self, data: Path, meta: Path, key: dict, dtype: str, shape: tuple[int, ...], fill: Fill) -> None:
        started = time.time()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with atomic_path(data) as tmp:
            array = np.memmap(tmp, dtype=_NUMPY[dtype], mode="w+", shape=shape)  # zero-filled: row 0 stays padding
            table = _view(array, dtype)
            facts = fill(_writer(table)) or {}
            array.flush()
            del array, table
        report = {"key": key, "shape": list(shape), "facts": facts, "bytes": data.stat().st_size,
                  "checksum": file_checksum(data), "build_seconds": round(time.time() - started, 2)}
        with atomic_path(meta) as tmp_meta:
            tmp_meta.write_text(json.dumps(report, indent=1))
        log.info("cache %s built in %.1f s: %s of shape %s (%.1f MB)", data.name, report["build_seconds"],
                 dtype, list(shape), report["bytes"] / 2**20)
