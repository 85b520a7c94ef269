"""Write the synthetic source (MIND-format) and target (Adressa-format) data sets.

Usage: python Dataset/generate_default_data.py [--out DIR] [--seed N] [--preset default|tiny]
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from adapter4rec.data.synthetic import PRESETS, generate


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "default",
                        help="output folder (gets source/ and target/ subfolders)")
    parser.add_argument("--seed", type=int, default=2024)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="default")
    args = parser.parse_args(argv)
    start = time.perf_counter()
    summary = generate(args.out, seed=args.seed, preset=args.preset)
    summary["seconds"] = round(time.perf_counter() - start, 2)
    summary["out"] = str(args.out)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
