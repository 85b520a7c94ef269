"""Convert another data-set format into the project's users.tsv / items.tsv (+ convert_report.json).

Usage:
  python Dataset/convert.py recbole-atomic --inter X.inter --item X.item --out DIR [--text_fields title,brand]
  python Dataset/convert.py recbole-split --dir DIR --name NAME --out DIR
  python Dataset/convert.py csv --interactions_csv I.csv --items_csv T.csv --out DIR
         [--user_col user --item_col item --time_col timestamp --item_id_col item --title_col title]
  python Dataset/convert.py minionerec --dir DIR --out DIR [--text_fields title,brand,categories]
Common: [--min_len 5] [--keep_unused_items]. The report is printed as JSON and written to DIR.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from adapter4rec.data.prepare.convert import Converted, write_dataset
from adapter4rec.data.prepare.formats import (read_interactions_csv, read_minionerec, read_recbole_atomic,
                                              read_recbole_split)
from adapter4rec.data.files import DataError


def _fields(value: str) -> list[str]:
    fields = [name.strip() for name in value.split(",") if name.strip()]
    if not fields:
        raise argparse.ArgumentTypeError("expected comma-separated field names, e.g. title,brand")
    return fields


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__,
                                     allow_abbrev=False)
    formats = parser.add_subparsers(dest="format", required=True, metavar="FORMAT")
    atomic = formats.add_parser("recbole-atomic", help="RecBole NAME.inter + NAME.item")
    atomic.add_argument("--inter", type=Path, required=True)
    atomic.add_argument("--item", type=Path, required=True)
    split = formats.add_parser("recbole-split", help="UniSRec-style NAME.{train,valid,test}.inter, .text, ...")
    split.add_argument("--dir", type=Path, required=True)
    split.add_argument("--name", required=True, help="file prefix, e.g. Scientific")
    plain = formats.add_parser("csv", help="interactions CSV + items CSV")
    plain.add_argument("--interactions_csv", type=Path, required=True)
    plain.add_argument("--items_csv", type=Path, required=True)
    for option, default in (("user_col", "user"), ("item_col", "item"), ("time_col", "timestamp"),
                            ("item_id_col", "item"), ("title_col", "title")):
        plain.add_argument(f"--{option}", default=default)
    mini = formats.add_parser("minionerec", help="MiniOneRec valid/ + test/ windows and index/*.item.json")
    mini.add_argument("--dir", type=Path, required=True)
    for sub in (atomic, split, plain, mini):
        sub.add_argument("--out", type=Path, required=True, help="folder for users.tsv, items.tsv, report")
        sub.add_argument("--min_len", type=int, default=5, help="users with fewer items are dropped")
        sub.add_argument("--keep_unused_items", action="store_true",
                         help="also write items that no kept user interacted with")
    for sub in (atomic, plain, mini):
        sub.add_argument("--text_fields", type=_fields, default=None,
                         help="comma-separated text fields, joined with '. ' (empty ones skipped)")
    return parser


def read_input(args: argparse.Namespace) -> Converted:
    if args.format == "recbole-atomic":
        return read_recbole_atomic(args.inter, args.item, args.text_fields)
    if args.format == "recbole-split":
        return read_recbole_split(args.dir, args.name)
    if args.format == "csv":
        return read_interactions_csv(args.interactions_csv, args.items_csv, args.user_col, args.item_col,
                                     args.time_col, args.item_id_col, args.title_col, args.text_fields)
    return read_minionerec(args.dir, args.text_fields)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        converted = read_input(args)
        written = write_dataset(args.out, converted.sequences, converted.titles, args.min_len,
                                args.keep_unused_items)
    except DataError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    report = {"format": args.format, "read": converted.report, "write": written}
    text = json.dumps(report, indent=2, ensure_ascii=False)
    (args.out / "convert_report.json").write_text(text + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
