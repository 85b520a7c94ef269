"""Build an image LMDB for the CV tree from an items file and a folder of images.

Usage: python Dataset/build_lmdb.py --items Dataset/HM/hm_50w_items.tsv --images Dataset/HM/hm_images \
           --out Dataset/HM/hm_50w_images.lmdb

Keys are the item names of the items file; values are the image files' own bytes (not pickles). Items with
no image file or an undecodable one are left out and listed in <out>.bad.tsv. An LMDB already built by the
original IDvs.MoRec/Adapter4Rec builder (pickled LMDB_Image values) needs no rebuilding: point the run's
`images_lmdb` at it.
"""
from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path

from adapter4rec.data.prepare.image_folders import build_from_folder


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0], allow_abbrev=False)
    parser.add_argument("--items", type=Path, required=True, help="items file: one item name per line")
    parser.add_argument("--images", type=Path, required=True, help="folder with <item>.jpg/.png/... files")
    parser.add_argument("--out", type=Path, required=True, help="LMDB folder to write (replaced if present)")
    parser.add_argument("--map_size", type=int, default=0, help="LMDB map size in bytes (default: from the folder)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    start = time.perf_counter()
    report = build_from_folder(args.items, args.images, args.out, args.map_size)
    report["seconds"] = round(time.perf_counter() - start, 2)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
