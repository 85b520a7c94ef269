"""Files that appear whole or not at all: every writer of a checkpoint, cache, table or output file goes through
`atomic_path`, so a crash, a kill or a full disk at any moment leaves either the old file or the new one."""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator


@contextmanager
def atomic_path(path: Path, fsync: bool = False) -> Iterator[Path]:
    """Yield a fresh temporary path in `path`'s folder (created if needed) to write; when the block ends without
    an exception the temporary file is (fsynced and) renamed over `path`, otherwise it is removed."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            with open(tmp, "rb+") as handle:
                os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)  # after a failure; after the rename there is nothing left to remove


def write_text_atomic(path: Path, text: str) -> None:
    """`path.write_text(text)` (UTF-8) that never leaves a torn file (a run folder's config, results, metrics)."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
