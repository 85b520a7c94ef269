"""Item images -> a per-item pixel table, decoded ONCE per dataset and image size (not per step).

The original decoded, converted and resized the image of every slot of every sequence on every step. Here
every item's image is decoded once (DataLoader workers over the LMDB), converted to RGB, resized to the
encoder's input size and stored as uint8 (num_items+1, 3, H, W), a record of the item store (data/store.py)
under `cache_dir`; training and evaluation then gather the rows of a batch's distinct items from that
memory-mapped file, and the encoder normalises on the device. Row 0 is the padding item (never encoded).

Modes and sizes: grayscale, palette and CMYK images are converted to RGB; images with transparency are
composited over white; every image is resized (bilinear by default) to the encoder's size, including
tiny ones (counted as `upscaled`). A missing or undecodable image is an error listing the items, unless
`missing_images=blank`, which gives such items a mean-colour image (all zeros after normalisation) and
counts them. The counts are logged and kept with the record (its facts, in the store's `.json`).
"""
from __future__ import annotations

import hashlib
import io
import logging
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset

from adapter4rec.data.files import DataError
from adapter4rec.data.lmdb_images import ImageEntryError, ImageLmdb

log = logging.getLogger(__name__)
CACHE_VERSION = 2  # bump when what a cached table holds changes (2: an item-store record)


@dataclass(frozen=True)
class ImageSpec:
    """How the encoder expects its input (from the checkpoint's preprocessor_config.json when present)."""
    height: int
    width: int
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)  # the paper's Normalize((0.5,)*3, (0.5,)*3)
    std: tuple[float, float, float] = (0.5, 0.5, 0.5)
    resample: int = int(Image.Resampling.BILINEAR)

    def blank(self) -> np.ndarray:
        """(3, H, W) uint8 mean-colour image: zeros once normalised."""
        colour = np.round(np.asarray(self.mean) * 255).astype(np.uint8)
        return np.broadcast_to(colour[:, None, None], (3, self.height, self.width)).copy()


def to_rgb(image: Image.Image) -> tuple[Image.Image, str | None]:
    """(RGB image, the original mode when a conversion was needed). Transparency is composited over white."""
    if image.mode == "RGB":
        return image, None
    mode = image.mode
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(canvas, rgba).convert("RGB"), mode
    return image.convert("RGB"), mode


def decode(value, spec: ImageSpec) -> tuple[np.ndarray, str | None, bool]:
    """Encoded bytes or an (H, W, C) uint8 array -> ((3, H', W') uint8 at the spec's size, converted mode,
    upscaled). Raises ValueError/OSError for undecodable data."""
    if isinstance(value, np.ndarray):
        channels = value.shape[2] if value.ndim == 3 else 1
        image = Image.fromarray(value if channels != 1 else value.reshape(value.shape[:2]))
    else:
        image = Image.open(io.BytesIO(value))
        image.load()  # decode now, so a truncated file fails here and not later
    image, converted = to_rgb(image)
    upscaled = image.width < spec.width or image.height < spec.height
    if image.size != (spec.width, spec.height):
        image = image.resize((spec.width, spec.height), resample=spec.resample)
    return np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy(), converted, upscaled


class _DecodeItems(Dataset):
    """Item i -> (pixels (3, H, W) uint8, status); status: 'ok', 'missing', 'corrupt: <reason>'."""

    def __init__(self, store: ImageLmdb, names: list[str], spec: ImageSpec):
        self.store, self.names, self.spec = store, names, spec

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int):
        try:
            value = self.store.get(self.names[i])
        except ImageEntryError as err:  # a damaged pickle (original layout): this item is undecodable
            return self.spec.blank(), f"corrupt: {type(err).__name__}: {err}", None, False
        if value is None:
            return self.spec.blank(), "missing", None, False
        try:
            pixels, converted, upscaled = decode(value, self.spec)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            return self.spec.blank(), f"corrupt: {type(err).__name__}: {err}", None, False
        return pixels, "ok", converted, upscaled


def _collate(batch):
    return np.stack([b[0] for b in batch]), [b[1:] for b in batch]


def pixel_key(store: Path, names: list[str], spec: ImageSpec, missing: str) -> dict:
    """The item-store key of a pixel table: it changes whenever the store, the item list, the spec or the policy
    changes."""
    data = store / "data.mdb" if store.is_dir() else store
    stat = data.stat()
    return {"kind": f"pixels-{store.name}", "version": CACHE_VERSION, "store": str(store.resolve()),
            "size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "spec": asdict(spec), "missing": missing,
            "names": hashlib.sha1("\n".join(names).encode()).hexdigest()}


def pixel_shape(names: list[str], spec: ImageSpec) -> tuple[int, int, int, int]:
    return len(names) + 1, 3, spec.height, spec.width


def decode_pixels(store_path: Path, names: list[str], spec: ImageSpec, write, missing: str, num_workers: int = 0,
                  batch_size: int = 64) -> dict:
    """Decode every item's image into rows 1..n through write(first_row, pixels (b, 3, H, W) uint8) (an item-store
    fill); returns the counts (missing, undecodable, converted, upscaled). missing='error' refuses any bad image."""
    store = ImageLmdb(store_path)
    # its own generator: building the cache (first run only) must not move the global RNG, or the model
    # initialised next would differ between the run that built the cache and later runs
    loader = DataLoader(_DecodeItems(store, names, spec), batch_size=batch_size, num_workers=num_workers,
                        collate_fn=_collate, generator=torch.Generator().manual_seed(0))
    report = {"items": len(names), "layout": store.layout, "missing": [], "corrupt": [], "converted": {},
              "upscaled": 0}
    row = 1
    for pixels, statuses in loader:
        write(row, torch.from_numpy(pixels))
        for offset, (status, converted, upscaled) in enumerate(statuses):
            name = names[row - 1 + offset]
            if status == "missing":
                report["missing"].append(name)
            elif status != "ok":
                report["corrupt"].append(f"{name} ({status[len('corrupt: '):]})")
            if converted:
                report["converted"][converted] = report["converted"].get(converted, 0) + 1
            report["upscaled"] += int(upscaled)
        row += len(pixels)
    bad = report["missing"] + report["corrupt"]
    if bad and missing == "error":
        raise DataError(f"{store_path}: {len(report['missing'])} item(s) of the items file have no image and "
                        f"{len(report['corrupt'])} cannot be decoded, e.g. {bad[:5]}; fix the store "
                        f"(Dataset/build_lmdb.py lists failures) or set missing_images=blank (mean-colour "
                        f"image, counted)")
    return report


class PixelTable:
    """(num_items+1, 3, H, W) uint8 pixels (memory-mapped from the item store); `gather(ids)` copies a batch's."""

    def __init__(self, pixels: torch.Tensor, digest: str):
        self.pixels, self.digest = pixels, digest  # digest: of the item-store key (store, items, size, policy)
        self.array = pixels.numpy()

    def __len__(self) -> int:
        return self.array.shape[0]

    def gather(self, ids: torch.Tensor) -> torch.Tensor:
        """ids (n,) int on any device -> (n, 3, H, W) uint8 on the CPU."""
        return torch.from_numpy(np.ascontiguousarray(self.array[ids.cpu().numpy()]))


def summary(report: dict) -> str:
    parts = [f"{report['items']} items ({report['layout']} layout)"]
    if report["missing"] or report["corrupt"]:
        parts.append(f"{len(report['missing'])} missing and {len(report['corrupt'])} undecodable -> mean-colour "
                     f"image (e.g. {(report['missing'] + report['corrupt'])[:3]})")
    if report["converted"]:
        parts.append("converted to RGB: " + ", ".join(f"{m}={n}" for m, n in sorted(report["converted"].items())))
    if report["upscaled"]:
        parts.append(f"{report['upscaled']} smaller than the input size (upscaled)")
    return "; ".join(parts)
