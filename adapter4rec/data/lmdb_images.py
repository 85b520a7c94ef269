"""Image store: an LMDB keyed by item name whose values are the image files' own bytes (JPEG, PNG, ...).

Our layout: key = item name (UTF-8) -> the encoded file, verbatim; `__meta__` -> JSON {"format", "count"}.
Nothing is pickled, so reading needs no project class and runs no code from the file.

The original IDvs.MoRec / Adapter4Rec layout is read too: values are pickles of an `LMDB_Image` object
(`channels`, `size` = (H, W), `image` = raw uint8 bytes), keys are the item name (Amazon) or, for HM
items `v<int>`, the integer without the `v` (`b'27903'` for `v27903`); `__keys__` / `__len__` hold pickled
lists/ints. Those pickles go through a restricted unpickler that only rebuilds `LMDB_Image`-named
objects and plain containers, never arbitrary classes.

`ImageLmdb` opens the environment lazily in the process that first reads, and again after a fork, so
each DataLoader worker has its own read-only, lock-free handle (one per store and process, see `_reader`).
"""
from __future__ import annotations

import io
import json
import os
import pickle
from pathlib import Path

import lmdb
import numpy as np

from adapter4rec.errors import UserError

META_KEY = b"__meta__"
FORMAT = "adapter4rec-images/1"
ORIGINAL_KEYS = (b"__keys__", b"__len__")


class ImageStoreError(UserError, ValueError):
    """A missing, unreadable or mismatched image store; the message names the path and the item."""


class ImageEntryError(ImageStoreError):
    """One item's entry is unreadable (the store itself is fine): an undecodable image, not a broken store."""


class _OriginalImage:
    """Stand-in for the original code's pickled `LMDB_Image` (attributes restored from the pickle)."""

    def pixels(self) -> np.ndarray:
        """(H, W, C) uint8, as the original `LMDB_Image.get_image()` returns it."""
        height, width = self.size
        return np.frombuffer(self.image, dtype=np.uint8).reshape(height, width, self.channels)


class _RestrictedUnpickler(pickle.Unpickler):
    """Rebuilds only what the original layout contains: LMDB_Image objects and builtin containers."""

    def find_class(self, module: str, name: str):
        if name == "LMDB_Image":
            return _OriginalImage
        if (module, name) in (("copyreg", "_reconstructor"), ("builtins", "object")):
            return getattr(__import__(module), name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} from an image LMDB")


def _unpickle(value: bytes):
    return _RestrictedUnpickler(io.BytesIO(value)).load()


def open_env(path: Path, write: bool = False, map_size: int = 1 << 30) -> lmdb.Environment:
    subdir = path.is_dir() if path.exists() else True
    if write:
        return lmdb.open(str(path), subdir=subdir, map_size=map_size, readonly=False, meminit=False,
                         map_async=True)
    return lmdb.open(str(path), subdir=subdir, readonly=True, lock=False, readahead=False, meminit=False)


_READERS: dict[str, tuple[int, lmdb.Environment]] = {}  # resolved path -> (pid, read-only environment)


def _reader(path: Path) -> lmdb.Environment:
    """One read-only environment per store and process: lmdb refuses to open the same files twice in one
    process, so every ImageLmdb of a path shares it. A forked DataLoader worker inherits the parent's
    handle and replaces it with its own (closing the child's copy is safe: read-only, lock=False)."""
    key = str(path.resolve())
    pid, env = _READERS.get(key, (None, None))
    if env is not None and pid == os.getpid():
        return env
    if env is not None:
        env.close()
    try:
        env = open_env(path)
    except lmdb.Error as err:
        raise ImageStoreError(f"image LMDB {path} cannot be opened: {err}") from None
    _READERS[key] = (os.getpid(), env)
    return env


def _forget_reader(path: Path) -> None:
    pid, env = _READERS.pop(str(path.resolve()), (None, None))
    if env is not None:
        env.close()


class ImageLmdb:
    """Read-only access by item name. `get(name)` returns encoded bytes (our layout) or an (H, W, C) uint8
    array (original layout); None when the item has no entry."""

    def __init__(self, path: Path):
        self.path = Path(path)
        if not self.path.exists():
            raise ImageStoreError(f"image LMDB {self.path} does not exist (build it with Dataset/build_lmdb.py)")
        self.layout = self._detect_layout()

    def _txn(self):
        return _reader(self.path).begin(write=False, buffers=False)

    def _detect_layout(self) -> str:
        with self._txn() as txn:
            meta = txn.get(META_KEY)
            if meta is not None:
                info = json.loads(meta)
                if info.get("format") != FORMAT:
                    raise ImageStoreError(f"image LMDB {self.path}: unknown format {info.get('format')!r}")
                return "adapter4rec"
            if any(txn.get(key) is not None for key in ORIGINAL_KEYS):
                return "original"
        raise ImageStoreError(f"image LMDB {self.path} has neither our {META_KEY!r} entry nor the original "
                              f"layout's __keys__/__len__: not an image store")

    def keys_for(self, name: str) -> list[bytes]:
        """Keys an item may be stored under: its name; for HM-style `v<int>` in the original layout, the int."""
        keys = [name.encode("utf-8")]
        if self.layout == "original" and name[:1] == "v" and name[1:].isdigit():
            keys.append(str(int(name[1:])).encode("ascii"))
        return keys

    def get(self, name: str):
        with self._txn() as txn:
            for key in self.keys_for(name):
                value = txn.get(key)
                if value is not None:
                    return value if self.layout == "adapter4rec" else self._original_value(name, value)
        return None

    def _original_value(self, name: str, value: bytes) -> np.ndarray:
        try:
            obj = _unpickle(value)
            return obj.pixels()
        except Exception as err:  # a damaged pickle can raise many types; name the item and stop
            raise ImageEntryError(f"image LMDB {self.path}: the entry of item {name!r} is not a readable "
                                  f"LMDB_Image pickle ({type(err).__name__}: {err})") from None

    def count(self) -> int:
        with self._txn() as txn:
            if self.layout == "adapter4rec":
                return int(json.loads(txn.get(META_KEY))["count"])
            raw = txn.get(b"__len__")
            return int(_unpickle(raw)) if raw is not None else len(_unpickle(txn.get(b"__keys__")))


def write_lmdb(path: Path, entries, map_size: int) -> int:
    """Write (name, encoded bytes) pairs into a new LMDB at `path` (our layout); returns the count.

    Written into `path` + '.partial' and renamed at the end, so an interrupted build never leaves a store
    that looks complete."""
    partial = path.with_name(path.name + ".partial")
    if partial.exists():
        _remove(partial)
    env = open_env(partial, write=True, map_size=map_size)
    count, txn = 0, env.begin(write=True)
    try:
        for name, data in entries:
            if name.encode("utf-8") == META_KEY:
                raise ImageStoreError(f"item name {name!r} collides with the store's metadata key")
            txn.put(name.encode("utf-8"), data)
            count += 1
            if count % 5000 == 0:  # bounded transaction size
                txn.commit()
                txn = env.begin(write=True)
        txn.put(META_KEY, json.dumps({"format": FORMAT, "count": count}).encode())
        txn.commit()
    except BaseException:
        txn.abort()
        env.close()
        _remove(partial)
        raise
    env.sync(True)
    env.close()
    _forget_reader(path)  # a reader of the old store in this process must not outlive it
    if path.exists():
        _remove(path)
    os.replace(partial, path)
    return count


def _remove(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            child.unlink()
        path.rmdir()
    else:
        path.unlink()
