"""Frozen forward cost of an image item encoder per image (not a test): `python bench/vit_cost.py`.

What a frozen-backbone cache (states/, models/frozen_path.py) pays once per catalogue item, and what full
fine-tuning or an adapter pays per distinct item of every step (forward only here; a backward costs about 2x
more). Runs the placed real ViT (pretrained_models/dinov2-vits14-224, `make encoders`) through ImageItemEncoder
at its own 224 px and at smaller sizes with its position table interpolated (the config key image_size), on a
given number of threads, and prints ms per image and the number of tokens.

    python bench/vit_cost.py --sizes 224,112 --threads 1 --batch 16 --repeats 3
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from adapter4rec.config import REPO_ROOT
from adapter4rec.data.images import PixelTable
from adapter4rec.models.item_encoders import ImageItemEncoder
from adapter4rec.models.pretrained import image_spec, load_backbone


def forward_ms(folder: Path, size: int, batch: int, repeats: int) -> tuple[float, int]:
    """(best-of-`repeats` ms per image of encode_pooled over `batch` random images, tokens per image)."""
    backbone = load_backbone(folder, "image").eval()
    spec = image_spec(folder, backbone.config, 0 if size == backbone.config.image_size else size)
    rng = np.random.default_rng(0)
    pixels = torch.from_numpy(rng.integers(0, 256, (batch + 1, 3, spec.height, spec.width), dtype=np.uint8))
    encoder = ImageItemEncoder(backbone, PixelTable(pixels, "bench"), spec, d=8).eval()
    ids = torch.arange(1, batch + 1)
    times = []
    with torch.no_grad():
        encoder.encode_pooled(ids[:2])  # warm-up: first-call allocations
        for _ in range(repeats):
            start = time.perf_counter()
            encoder.encode_pooled(ids)
            times.append(time.perf_counter() - start)
    return 1000 * min(times) / batch, 1 + encoder.patches()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--folder", default=str(REPO_ROOT / "pretrained_models" / "dinov2-vits14-224"))
    parser.add_argument("--sizes", default="224,112", help="comma list of input sizes (multiples of the patch)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=3)
    opts = parser.parse_args()
    folder = Path(opts.folder)
    if not (folder / "config.json").is_file():
        raise SystemExit(f"{folder} is not placed: run `make encoders` (or pass --folder)")
    torch.set_num_threads(opts.threads)
    print(f"{folder.name}, {opts.threads} thread(s), batch {opts.batch}, best of {opts.repeats}, forward only")
    print("| input px | tokens | ms / image | images / s |\n|---:|---:|---:|---:|")
    for size in (int(s) for s in opts.sizes.split(",")):
        ms, tokens = forward_ms(folder, size, opts.batch, opts.repeats)
        print(f"| {size} | {tokens} | {ms:.1f} | {1000 / ms:.1f} |")


if __name__ == "__main__":
    main()
