"""Converting other sequential-recommendation data sets into the project's users.tsv / items.tsv.

A format reader (see formats.py) returns a `Converted`: user -> time-ordered item ids (repeats kept,
the evaluation handles them), item -> text, and a report of what it read and dropped, per reason.
`write_dataset` then applies the final filters (items without text, users shorter than `min_len`) and writes
files that `adapter4rec.data.files.read_items` / `read_users` load. Output is deterministic: users and items
are written sorted by id (plain string order).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from adapter4rec.data.files import DataError

MAX_EXAMPLES = 5  # malformed lines quoted in a report; the rest are only counted


@dataclass
class ReadLog:
    """What a reader skipped (per reason), what it repaired or noticed, and the first malformed lines."""
    dropped: Counter = field(default_factory=Counter)
    noted: Counter = field(default_factory=Counter)
    examples: list[str] = field(default_factory=list)

    def drop(self, reason: str, count: int = 1) -> None:
        if count:  # zero counts stay out of the report
            self.dropped[reason] += count

    def note(self, event: str, count: int = 1) -> None:
        if count:
            self.noted[event] += count

    def malformed(self, where: str, why: str) -> None:
        """A skipped input line; `where` is 'file:line' (or 'file: key' for JSON)."""
        self.dropped["malformed_lines"] += 1
        if len(self.examples) < MAX_EXAMPLES:
            self.examples.append(f"{where}: {why}")


@dataclass
class Converted:
    """A data set read into memory, before the final filters of `write_dataset`."""
    sequences: dict[str, list[str]]  # user -> time-ordered item ids, repeats kept
    titles: dict[str, str]           # item -> cleaned text; "" means no text
    report: dict


def clean_text(value: object) -> str:
    """One line of text: every whitespace run (tabs, newlines, NBSP, ...) becomes one space.

    The output files are tab-separated and line-based, so a tab or line break inside a title would shift
    columns or split the item in two."""
    return " ".join(str(value).split())


def join_text(parts: list[object]) -> str:
    """The chosen text fields, cleaned, joined with '. '; empty fields are skipped (no '. . ')."""
    return ". ".join(text for text in (clean_text(part) for part in parts) if text)


def item_id_problem(item: str) -> str | None:
    """Why `item` cannot be an item id in users.tsv (items are space-separated there), or None."""
    if not item:
        return "empty item id"
    if any(ch.isspace() for ch in item):
        return f"item id {item[:40]!r} contains whitespace"
    return None


def user_id_problem(user: str) -> str | None:
    """Why `user` cannot be a user id (the reader strips the first tab-separated column), or None."""
    if not user:
        return "empty user id"
    if user != user.strip() or any(ch in user for ch in "\t\n\r"):
        return f"user id {user[:40]!r} has a tab, a line break or surrounding spaces"
    return None


def reader_report(fmt: str, sources: dict[str, Path], conv_sequences: dict[str, list[str]],
                  titles: dict[str, str], log: ReadLog) -> dict:
    """The reader's half of the report (the writer adds its own half)."""
    return {
        "format": fmt,
        "sources": {name: str(path) for name, path in sources.items()},
        "users_read": len(conv_sequences),
        "interactions_read": sum(len(seq) for seq in conv_sequences.values()),
        "items_read": len(titles),
        "dropped": dict(sorted(log.dropped.items())),
        "malformed_examples": list(log.examples),
        "noted": dict(sorted(log.noted.items())),
    }


def _filter(sequences: dict[str, list[str]], texts: dict[str, str], min_len: int) -> tuple[dict, Counter]:
    """Users kept after removing items without text and then users shorter than `min_len`."""
    counts: Counter = Counter()
    kept: dict[str, list[str]] = {}
    without_text: set[str] = {item for item, text in texts.items() if not text}
    for user in sorted(sequences):
        problem = user_id_problem(user)
        if problem:
            raise DataError(f"write_dataset: {problem}")
        seq = sequences[user]
        missing = [item for item in seq if not texts.get(item)]
        without_text.update(missing)
        counts["interactions_dropped_no_text"] += len(missing)
        seq = [item for item in seq if texts.get(item)] if missing else list(seq)
        if len(seq) < min_len:
            counts["users_dropped_too_short"] += 1
            counts["interactions_dropped_short_users"] += len(seq)
            continue
        kept[user] = seq
    counts["items_without_text_dropped"] = len(without_text)
    return kept, counts


def _repeat_stats(kept: dict[str, list[str]]) -> dict:
    """Repeats are kept (the evaluation decides what to do with them) but reported."""
    anywhere = sum(1 for seq in kept.values() if len(set(seq)) < len(seq))
    consecutive = sum(1 for seq in kept.values() if any(a == b for a, b in zip(seq, seq[1:])))
    return {"users_with_repeated_items": anywhere, "users_with_consecutive_repeats": consecutive}


def write_dataset(out_dir: Path, sequences: dict[str, list[str]], titles: dict[str, str], min_len: int = 5,
                  keep_unused_items: bool = False) -> dict:
    """Write out_dir/users.tsv and out_dir/items.tsv; return what was written and dropped, per reason.

    Items without text are removed from the sequences first, so a user can become too short because of them.
    Items no kept user references are not written unless `keep_unused_items` (every catalogue item is a
    ranking candidate, and one that never occurs only dilutes the ranking)."""
    texts = {item: clean_text(text) for item, text in titles.items()}
    kept, counts = _filter(sequences, texts, min_len)
    if not kept:
        raise DataError(f"write_dataset: no user left with >= {min_len} items with text "
                        f"({len(sequences)} users in, {counts['users_dropped_too_short']} too short)")
    used = {item for seq in kept.values() for item in seq}
    items = sorted(item for item, text in texts.items() if text and (keep_unused_items or item in used))
    for item in items:
        problem = item_id_problem(item)
        if problem:
            raise DataError(f"write_dataset: {problem}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "users.tsv", "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{user}\t{' '.join(seq)}\n" for user, seq in kept.items())  # kept is sorted
    with open(out_dir / "items.tsv", "w", encoding="utf-8", newline="\n") as handle:
        handle.writelines(f"{item}\t{texts[item]}\n" for item in items)
    lengths = [len(seq) for seq in kept.values()]
    return {
        "min_len": min_len,
        "users_in": len(sequences),
        "users_written": len(kept),
        "interactions_in": sum(len(seq) for seq in sequences.values()),
        "items_written": len(items),
        "interactions_written": sum(lengths),
        "seq_len_min": min(lengths),
        "seq_len_mean": round(sum(lengths) / len(lengths), 3),
        "seq_len_max": max(lengths),
        "dropped": {**dict(sorted(counts.items())),
                    "items_unused_not_written": sum(1 for i, t in texts.items() if t and i not in used)
                    if not keep_unused_items else 0},
        **_repeat_stats(kept),
        "files": {"users": str(out_dir / "users.tsv"), "items": str(out_dir / "items.tsv")},
    }
