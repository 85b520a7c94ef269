"""Build an image LMDB (our layout, see lmdb_images.py) from an items file and a folder of image files.

For each item name `X` the folder must hold `X.jpg`, `X.jpeg`, `X.png`, `X.webp`, `X.bmp` or `X.gif`
(the first found). Each file is decoded once to check it, then stored verbatim. Items without a file or
with a file that does not decode are left out of the store, listed in `<out>.bad.tsv`
(`item<TAB>reason`) and counted in the report; training then stops on them, naming them, unless
`missing_images=blank`.
"""
from __future__ import annotations

import io
import logging
from pathlib import Path

from PIL import Image

from adapter4rec.data.files import read_item_names
from adapter4rec.data.lmdb_images import write_lmdb

log = logging.getLogger(__name__)
EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")


def find_image(folder: Path, name: str) -> Path | None:
    for ext in EXTENSIONS + tuple(e.upper() for e in EXTENSIONS):
        path = folder / f"{name}{ext}"
        if path.is_file():
            return path
    return None


def check_image(data: bytes) -> str | None:
    """None if `data` decodes as an image, else the reason."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.width < 1 or image.height < 1:
                return "empty image"
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
        return f"{type(err).__name__}: {err}"
    return None


def build_from_folder(items_file: Path, folder: Path, out: Path, map_size: int = 0) -> dict:
    """Write `out` (an LMDB folder) and `<out>.bad.tsv`; returns {"stored", "missing", "corrupt", ...}."""
    names = read_item_names(items_file).ids
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder {folder} does not exist")
    bad: list[tuple[str, str]] = []
    sizes = 0

    def entries():
        nonlocal sizes
        for name in names:
            path = find_image(folder, name)
            if path is None:
                bad.append((name, "missing: no image file " + "/".join(f"{name}{e}" for e in EXTENSIONS[:3])))
                continue
            data = path.read_bytes()
            reason = check_image(data)
            if reason is not None:
                bad.append((name, f"corrupt: {path.name}: {reason}"))
                continue
            sizes += len(data)
            yield name, data

    if not map_size:  # LMDB needs an upper bound: the folder's size with generous headroom
        total = sum(p.stat().st_size for p in folder.iterdir() if p.is_file())
        map_size = max(64 << 20, 2 * total + len(names) * 4096)
    stored = write_lmdb(out, entries(), map_size)
    bad_file = out.with_name(out.name + ".bad.tsv")
    bad_file.write_text("".join(f"{name}\t{reason}\n" for name, reason in bad), encoding="utf-8")
    report = {"items": len(names), "stored": stored, "bytes": sizes,
              "missing": sum(r.startswith("missing") for _, r in bad),
              "corrupt": sum(r.startswith("corrupt") for _, r in bad), "bad_list": str(bad_file)}
    if bad:
        log.warning("%s: %d item(s) left out (listed in %s), e.g. %s", out, len(bad), bad_file, bad[:3])
    return report
