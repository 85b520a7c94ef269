"""Readers of other data-set formats, each returning a `Converted` (see convert.py).

Documented skip-and-count behaviour (everything else that is wrong fails with a DataError naming the file
and, where there is one, the column):
- a data line with too few fields, an empty or whitespace-containing id, an unparsable timestamp or an
  unparsable MiniOneRec history list is a malformed line: skipped, counted, the first few quoted;
- an item appearing twice in an item/text file keeps its first text (counted);
- recbole-split: an integer index missing from item2index/user2index drops that interaction/user (counted);
- minionerec: a window whose history does not end with the sequence rebuilt so far is skipped (counted).
Missing files, missing header columns and missing text fields fail.
"""
from __future__ import annotations

import ast
import csv
import json
import math
from datetime import datetime, timezone
from pathlib import Path
from typing import Iterator

from adapter4rec.data.files import DataError, iter_tsv_lines
from adapter4rec.data.prepare.convert import Converted, ReadLog, item_id_problem, join_text, reader_report, user_id_problem

DEFAULT_ATOMIC_TEXT = ("title", "categories", "brand")


# ----------------------------------------------------------------------------------------------- helpers
def _columns(path: Path, header: list[str], required: list[str], recbole: bool) -> list[int]:
    """Positions of the required columns; RecBole headers are 'name:type', only the name is matched."""
    names = [col.strip().split(":")[0] if recbole else col.strip() for col in header]
    missing = [name for name in required if name not in names]
    if missing:
        raise DataError(f"{path}: required column {missing[0]!r} not in the header (columns: {names})")
    return [names.index(name) for name in required]


def _header(path: Path) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """Field names of a RecBole atomic file ('name:type' -> 'name') and an iterator over its data lines."""
    lines = iter_tsv_lines(path)
    first = next(lines, None)
    if first is None:
        raise DataError(f"{path}: empty file (expected a header line of 'name:type' fields)")
    return first[1], lines


def _tsv_with_header(path: Path, required: list[str]) -> tuple[list[int], Iterator[tuple[int, list[str]]]]:
    """Required column positions of a RecBole atomic file and an iterator over its data lines."""
    header, lines = _header(path)
    return _columns(path, header, required, recbole=True), lines


def _item_lines(path: Path, lines, id_col: int, log: ReadLog):
    """(item id, columns) of the lines whose item id is usable; the others are counted as malformed."""
    for number, cols in lines:
        item = cols[id_col].strip() if id_col < len(cols) else ""
        problem = item_id_problem(item)
        if problem:
            log.malformed(f"{path}:{number}", problem)
            continue
        yield item, cols


def _ids(path: Path, number: int, user: str, item: str, log: ReadLog) -> bool:
    """True when both ids are usable; otherwise the line is counted as malformed."""
    problem = user_id_problem(user) or item_id_problem(item)
    if problem:
        log.malformed(f"{path}:{number}", problem)
    return problem is None


def _time(value: str) -> float | None:
    """Seconds from a number or an ISO date/time (naive = UTC); None when it is neither."""
    try:
        seconds = float(value)
    except ValueError:
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = moment.timestamp()
    return seconds if math.isfinite(seconds) else None


def _ordered(events: dict[str, list[tuple[float, str]]]) -> dict[str, list[str]]:
    """Items of each user by time; list.sort is stable, so ties keep file order."""
    return {user: [item for _, item in sorted(rows, key=lambda row: row[0])] for user, rows in events.items()}


def _add_text(titles: dict[str, str], item: str, text: str, log: ReadLog) -> None:
    if item in titles:
        log.drop("duplicate_item_rows")  # first text wins, like a first-seen dictionary
    else:
        titles[item] = text


# ---------------------------------------------------------------------------------------- recbole-atomic
def _atomic_items(path: Path, text_fields: list[str] | None, log: ReadLog) -> dict[str, str]:
    header, lines = _header(path)
    names = [col.strip().split(":")[0] for col in header]
    if text_fields is None:  # the default uses the UniSRec fields that this file has; title at least
        text_fields = [name for name in DEFAULT_ATOMIC_TEXT if name in names] or ["title"]
    id_col, *text_cols = _columns(path, header, ["item_id", *text_fields], recbole=True)
    titles: dict[str, str] = {}
    for item, cols in _item_lines(path, lines, id_col, log):
        # a short line only lacks trailing (possibly empty) text fields
        _add_text(titles, item, join_text([cols[j] if j < len(cols) else "" for j in text_cols]), log)
    return titles


def _atomic_inter(path: Path, log: ReadLog) -> dict[str, list[str]]:
    (u_col, i_col, t_col), lines = _tsv_with_header(path, ["user_id", "item_id", "timestamp"])
    events: dict[str, list[tuple[float, str]]] = {}
    for number, cols in lines:
        if len(cols) <= max(u_col, i_col, t_col):
            log.malformed(f"{path}:{number}", f"{len(cols)} field(s), too few for user_id, item_id, timestamp")
            continue
        user, item, when = cols[u_col].strip(), cols[i_col].strip(), _time(cols[t_col])
        if when is None:
            log.malformed(f"{path}:{number}", f"timestamp {cols[t_col][:40]!r} is not a number")
        elif _ids(path, number, user, item, log):
            events.setdefault(user, []).append((when, item))
    return _ordered(events)


def read_recbole_atomic(inter: Path, item: Path, text_fields: list[str] | None = None) -> Converted:
    """RecBole NAME.inter (user_id, item_id, timestamp) + NAME.item (item_id and text fields)."""
    log = ReadLog()
    titles = _atomic_items(Path(item), text_fields, log)
    sequences = _atomic_inter(Path(inter), log)
    report = reader_report("recbole-atomic", {"inter": inter, "item": item}, sequences, titles, log)
    return Converted(sequences, titles, report)


# ----------------------------------------------------------------------------------------- recbole-split
def _index_file(path: Path, log: ReadLog) -> dict[str, str]:
    """index -> raw id from a headerless 'raw<TAB>index' file."""
    raw_of: dict[str, str] = {}
    for number, cols in iter_tsv_lines(path):
        if len(cols) != 2 or not cols[0].strip() or not cols[1].strip():
            log.malformed(f"{path}:{number}", f"expected 'raw_id<TAB>index', got {len(cols)} field(s)")
            continue
        raw, index = cols[0].strip(), cols[1].strip()
        if raw_of.get(index, raw) != raw:
            raise DataError(f"{path}:{number}: index {index!r} maps to {raw_of[index]!r} and to {raw!r}")
        raw_of[index] = raw
    return raw_of


def _split_rows(path: Path, log: ReadLog) -> dict[str, list[str]]:
    """user index -> history + [target] (indices) of the user's first row in a *.inter split file."""
    (u_col, h_col, t_col), lines = _tsv_with_header(path, ["user_id", "item_id_list", "item_id"])
    rows: dict[str, list[str]] = {}
    for number, cols in lines:
        if len(cols) <= max(u_col, h_col, t_col) or not cols[u_col].strip() or not cols[t_col].strip():
            log.malformed(f"{path}:{number}", "missing user_id or item_id")
        elif cols[u_col].strip() in rows:
            log.drop("duplicate_user_rows")
        else:
            rows[cols[u_col].strip()] = cols[h_col].split() + [cols[t_col].strip()]
    return rows


def _split_text(path: Path, log: ReadLog) -> dict[str, str]:
    header, lines = _header(path)
    id_col, text_col = _columns(path, header, ["item_id", "text"], recbole=True)
    last = text_col == len(header) - 1
    titles: dict[str, str] = {}
    for item, cols in _item_lines(path, lines, id_col, log):
        # text is the last column in UniSRec files: a stray tab inside it must not cut it short
        text = " ".join(cols[text_col:]) if last else (cols[text_col] if text_col < len(cols) else "")
        _add_text(titles, item, join_text([text]), log)
    return titles


def read_recbole_split(directory: Path, name: str) -> Converted:
    """UniSRec-style leave-one-out files; a user's sequence is the test row's history + target."""
    directory, log = Path(directory), ReadLog()
    paths = {kind: directory / f"{name}.{kind}" for kind in ("test.inter", "valid.inter", "item2index",
                                                              "user2index", "text")}
    item_of, user_of = _index_file(paths["item2index"], log), _index_file(paths["user2index"], log)
    titles = _split_text(paths["text"], log)
    test, valid = _split_rows(paths["test.inter"], log), _split_rows(paths["valid.inter"], log)
    sequences: dict[str, list[str]] = {}
    for user_index in [*test, *(u for u in valid if u not in test)]:
        user = user_of.get(user_index)
        if user is None or user in sequences:
            log.drop("users_unknown_index" if user is None else "users_duplicate_raw_id")  # first index wins
            continue
        if user_index not in test:
            log.note("users_from_valid_row")  # no test row: the valid row is one item shorter
        row = test.get(user_index) or valid[user_index]
        seq = [item_of[i] for i in row if i in item_of]
        log.drop("interactions_unknown_item_index", len(row) - len(seq))
        sequences[user] = seq
    log.note("users_in_user2index_without_test_or_valid_row",
             sum(1 for index in user_of if index not in test and index not in valid))
    return Converted(sequences, titles, reader_report("recbole-split", paths, sequences, titles, log))


# ---------------------------------------------------------------------------------------------------- csv
def _csv_rows(path: Path, required: list[str], log: ReadLog) -> Iterator[tuple[int, dict[str, str]]]:
    """(line number, row) for rows that have every required column; short/long rows are malformed."""
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        try:
            # stripped names, so that 'user, item' headers match; the rows are keyed by these names
            reader.fieldnames = [name.strip() for name in reader.fieldnames or []]
            _columns(path, reader.fieldnames, required, recbole=False)
            for row in reader:
                if None in row or any(row[name] is None for name in required):
                    log.malformed(f"{path}:{reader.line_num}", f"field count differs from the header's "
                                  f"{len(reader.fieldnames)}")
                    continue
                yield reader.line_num, row
        except UnicodeDecodeError as err:
            raise DataError(f"{path}: not valid UTF-8 ({err.reason})") from None
        except csv.Error as err:
            raise DataError(f"{path}:{reader.line_num}: CSV error: {err}") from None


def read_interactions_csv(interactions: Path, items: Path, user_col: str = "user", item_col: str = "item",
                          time_col: str = "timestamp", item_id_col: str = "item", title_col: str = "title",
                          text_fields: list[str] | None = None) -> Converted:
    """An interactions CSV + an items CSV. An empty `time_col` keeps the file order."""
    log, text_cols = ReadLog(), text_fields or [title_col]
    titles: dict[str, str] = {}
    for number, row in _csv_rows(Path(items), [item_id_col, *text_cols], log):
        item = row[item_id_col].strip()
        problem = item_id_problem(item)
        if problem:
            log.malformed(f"{items}:{number}", problem)
        else:
            _add_text(titles, item, join_text([row[col] for col in text_cols]), log)
    events: dict[str, list[tuple[float, str]]] = {}
    for number, row in _csv_rows(Path(interactions), [user_col, item_col, *([time_col] if time_col else [])], log):
        user, item = row[user_col].strip(), row[item_col].strip()
        when = _time(row[time_col]) if time_col else 0.0
        if when is None:
            log.malformed(f"{interactions}:{number}", f"timestamp {row[time_col][:40]!r} is not a number or date")
        elif _ids(Path(interactions), number, user, item, log):
            events.setdefault(user, []).append((when, item))
    sequences = _ordered(events)
    report = reader_report("csv", {"interactions": interactions, "items": items}, sequences, titles, log)
    return Converted(sequences, titles, report)


# --------------------------------------------------------------------------------------------- minionerec
def _single(folder: Path, pattern: str) -> Path:
    found = sorted(folder.glob(pattern)) if folder.is_dir() else []
    if len(found) != 1:
        raise DataError(f"{folder}: expected exactly one {pattern} file, found {len(found)} "
                        f"{[p.name for p in found]}")
    return found[0]


def _minionerec_items(path: Path, fields: list[str], log: ReadLog) -> dict[str, str]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise DataError(f"{path}: not a UTF-8 JSON file ({err})") from None
    if not isinstance(data, dict):
        raise DataError(f"{path}: expected a JSON object {{item_index: {{title, ...}}}}")
    entries = {key: value for key, value in data.items() if isinstance(value, dict)}
    for key in data.keys() - entries.keys():
        log.malformed(f"{path}: item {key!r}", "entry is not an object")
    for name in fields:
        if entries and not any(name in value for value in entries.values()):
            raise DataError(f"{path}: text field {name!r} is in no item "
                            f"(fields of the first item: {sorted(next(iter(entries.values())))})")
    titles: dict[str, str] = {}
    for key, value in entries.items():
        if item_id_problem(key.strip()):
            log.malformed(f"{path}: item {key!r}", item_id_problem(key.strip()) or "")
            continue
        parts = [", ".join(map(str, part)) if isinstance(part, list) else part
                 for part in (value.get(name) or "" for name in fields)]
        titles[key.strip()] = join_text(parts)
    return titles


def _parse_window(row: dict[str, str]) -> tuple[list[str], str]:
    """(history item ids, target item id) of one window; ValueError when unusable."""
    try:
        history = ast.literal_eval(row["history_item_id"].strip() or "[]")
    except (SyntaxError, ValueError, MemoryError):
        raise ValueError(f"history_item_id {row['history_item_id'][:40]!r} is not a Python list") from None
    if not isinstance(history, (list, tuple)) or not all(isinstance(x, (int, str)) for x in history):
        raise ValueError(f"history_item_id {row['history_item_id'][:40]!r} is not a list of ids")
    items = [str(x).strip() for x in history] + [row["item_id"].strip()]
    problem = user_id_problem(row["user_id"].strip()) or next(filter(None, map(item_id_problem, items)), None)
    if problem:
        raise ValueError(problem)
    return items[:-1], items[-1]


def _merge(windows: list[tuple[list[str], str]], log: ReadLog) -> list[str]:
    """First window's history + target, then each later consistent window's target."""
    history, target = windows[0]
    seq = [*history, target]
    for history, target in windows[1:]:
        overlap = min(len(history), len(seq))
        # a window continues the sequence when its (capped) history is the sequence's tail
        if history[len(history) - overlap:] == seq[len(seq) - overlap:]:
            seq.append(target)
        else:
            log.drop("inconsistent_windows")
    return seq


def read_minionerec(directory: Path, text_fields: list[str] | None = None) -> Converted:
    """MiniOneRec valid/*.csv + test/*.csv sliding windows (valid first: it is earlier) + index/*.item.json."""
    directory, log = Path(directory), ReadLog()
    sources = {"valid": _single(directory / "valid", "*.csv"), "test": _single(directory / "test", "*.csv"),
               "items": _single(directory / "index", "*.item.json")}
    titles = _minionerec_items(sources["items"], text_fields or ["title"], log)
    windows: dict[str, list[tuple[list[str], str]]] = {}
    for part in ("valid", "test"):
        for number, row in _csv_rows(sources[part], ["user_id", "history_item_id", "item_id"], log):
            log.note(f"rows_{part}")
            try:
                windows.setdefault(row["user_id"].strip(), []).append(_parse_window(row))
            except ValueError as err:
                log.malformed(f"{sources[part]}:{number}", str(err))
    sequences = {user: _merge(user_windows, log) for user, user_windows in windows.items()}
    return Converted(sequences, titles, reader_report("minionerec", sources, sequences, titles, log))
