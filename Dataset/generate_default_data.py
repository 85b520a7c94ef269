"""Write the synthetic source and target data sets: text (MIND -> Adressa format, into Dataset/default) or
images (HM -> Amazon format with images and LMDBs, into Dataset/default_cv).

Usage: python Dataset/generate_default_data.py [--modality text|image] [--out DIR] [--seed N] [--preset default|tiny]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from adapter4rec.data.synthetic.images import generate_images
from adapter4rec.data.synthetic.text import PRESETS, generate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--modality", choices=("text", "image"), default="text")
    parser.add_argument("--out", type=Path, default=None,
                        help="output folder (gets source/ and target/ subfolders; default Dataset/default or "
                             "Dataset/default_cv)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    out = args.out or Path(__file__).resolve().parent / ("default" if args.modality == "text" else "default_cv")
    summary = (generate if args.modality == "text" else generate_images)(out, seed=args.seed, preset=args.preset)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["out"] = str(out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
