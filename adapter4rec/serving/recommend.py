"""Top-K recommendations out of a finished run, with the scorer evaluation uses.

    python -m adapter4rec recommend RUN_DIR [--users FILE] [--user ID] [--k 20] [--out recs.tsv] [--device cpu]
                                    [--fallback none|popularity] [--unknown_items error|drop]
                                    [--new_items FILE [--only_new]] [--format tsv|jsonl]

The model is rebuilt from RUN_DIR/best.pt as the run built it (full, PEFT adapters over the source checkpoint,
any item tower), every item is encoded once, and each user's next items are ranked over the run's candidate items
with the user's whole history masked (unless the run used eval_repeats=no_mask), chunked in users and items.
Users: those of the run's users file (their whole sequence is the history), or of --users FILE in the same
format, read against the run's items file (unknown items handled as --unknown_items, by default as the run's
`unknown_items`, says); --user ID writes that user's list only. Options are never abbreviated.
Output: a TSV with the header line `user<TAB>rank<TAB>item<TAB>title<TAB>score`, then K lines per user, best first,
in the users file's order (title: the item's title from the items file); --format jsonl writes one JSON object
per line with the same keys instead (default --out recs.jsonl).
--new_items FILE (items format) adds items the run never saw, embedded from their text alone by a text run's
content path (new_items.py), to the candidates; --only_new ranks them alone (e.g. to place new arrivals).

A user none of whose items is in the run's items file gets no list (counted in the summary line), or with
--fallback popularity the run's most popular training items among the candidates (score = training count).
Refused with one line, before any model is built: an --out that is a .pt name, a directory, a path under a
file, unwritable, or an existing file that recommend did not write (best.pt, config.json, the users file...);
a users file that is missing or names a user twice. After scoring, a model whose user vectors (or scores) are
not finite is refused too: nothing is written. NaN item scores are never recommended.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch

from adapter4rec.atomic import atomic_path
from adapter4rec.data.files import iter_tsv_lines, read_users
from adapter4rec.data.split import eval_split_of
from adapter4rec.errors import exit_on_user_error
from adapter4rec.evaluate import autocast, model_user_fn, top_k
from adapter4rec.run.folder import holder_of
from adapter4rec.serving.new_items import NewItems, check_run_can_embed, embed_new_items, extend_candidates
from adapter4rec.training.assemble import rebuild_run

log = logging.getLogger("adapter4rec")

FALLBACKS = ("none", "popularity")


@dataclass
class Written:
    """What recommend wrote: users ranked by the model, users with no known item and what they got."""
    ranked: int
    unknown: int = 0
    fallback: str = "none"
    new_items: int = 0  # items outside the run's catalogue ranked by their text (--new_items)
    longest: int | None = None  # the longest list written (below k when fewer candidates are left)

    def summary(self, out: Path, k: int) -> str:
        shown = k if self.longest is None or self.longest >= k else self.longest
        line = f"wrote {out}: top-{shown} items of {self.ranked} users"
        if shown < k:
            line += f" (asked for {k}: no user has more candidates left after masking)"
        if self.new_items:
            line += f" (with {self.new_items} new items ranked by their text)"
        if self.unknown and self.fallback == "popularity":
            return line + (f"; {self.unknown} users had no known items and got the run's {k} most popular training "
                           f"items (--fallback popularity)")
        if self.unknown:
            return line + f"; {self.unknown} users had no known items and got no list"
        return line


def check_output(out: Path) -> None:
    """Refuse an --out that would destroy a file or cannot be written, before anything is built or scored.

    recommend never overwrites a file it did not write (a checkpoint, config.json, the users file it reads):
    an existing file is replaced only when it is empty or reads like recommend's own TSV."""
    if out.suffix.lower() == ".pt":
        raise SystemExit(f"recommend: --out {out}: a .pt name is a checkpoint's, not recommendations (a TSV); "
                         f"choose another name, e.g. recs.tsv")
    try:  # any OSError here (a name too long, no permission) would also stop the write, after the scoring
        _check_output_path(out)
    except OSError as err:
        raise SystemExit(f"recommend: --out {out}: cannot write into {out.parent} ({err.strerror or err})") from None


def _check_output_path(out: Path) -> None:
    if out.is_dir():
        raise SystemExit(f"recommend: --out {out} is a directory; name a file in it, e.g. {out / 'recs.tsv'}")
    above = next((p for p in out.parents if p.exists()), None)  # the nearest existing path above: a folder?
    if above is not None and not above.is_dir():
        raise SystemExit(f"recommend: --out {out} lies under {above}, which is a file, not a folder")
    if out.exists() and not _reads_like_recommendations(out):
        raise SystemExit(f"recommend: --out {out} exists and was not written by recommend (not a "
                         f"'user<TAB>rank<TAB>item<TAB>score' file); it is left alone: choose another name")
    out.parent.mkdir(parents=True, exist_ok=True)  # made as the write would make it, and probed
    with tempfile.TemporaryFile(dir=out.parent):
        pass


COLUMNS = ("user", "rank", "item", "title", "score")
FORMATS = ("tsv", "jsonl")


def _reads_like_recommendations(path: Path) -> bool:
    """Empty, our header line, a JSON line with our keys, or (as written before the header) a first line
    `user<TAB>rank<TAB>item<TAB>score` with an integer rank and a numeric score."""
    try:
        with open(path, "rb") as handle:
            first = handle.read(65536).split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
        if not first or first == "\t".join(COLUMNS):
            return True
        if first.startswith("{"):
            return set(json.loads(first)) == set(COLUMNS)
        cols = first.split("\t")
        if len(cols) != 4:
            return False
        float(cols[3])  # a score, or ValueError
        return int(cols[1]) >= 1
    except (OSError, UnicodeDecodeError, ValueError):
        return False


def user_ids(path: Path) -> list[str]:
    """The user ids of a users file in file order, refusing an id given twice (recommend would write two lists for
    one user; read_users only counts repeats). Malformed lines are left to read_users, which names them."""
    if not path.is_file():
        raise SystemExit(f"recommend: users file {path}: file not found")
    first_line: dict[str, int] = {}
    for number, cols in iter_tsv_lines(path):
        user = cols[0].strip()
        if len(cols) != 2 or not user:
            continue
        if user in first_line:
            raise SystemExit(f"recommend: {path}:{number}: user {user!r} appears again (first on line "
                             f"{first_line[user]}); give each user one line")
        first_line[user] = number
    return list(first_line)


class _CheckedUsers:
    """The model's user vectors, passed through as top_k asks for them (batches in user order), noting the users
    whose vector is not finite."""

    def __init__(self, user_fn):
        self.user_fn, self.done, self.bad = user_fn, 0, []

    def __call__(self, history: torch.Tensor) -> torch.Tensor:
        vectors = self.user_fn(history)
        self.bad += (torch.nonzero(~torch.isfinite(vectors).all(1)).squeeze(1) + self.done).tolist()
        self.done += len(vectors)
        return vectors


def rank_histories(model, data, cfg, sequences: list, user_names: list[str], k: int, batch_size: int, device: str,
                   run_dir: Path, new: NewItems | None = None, only_new: bool = False,
                   mask_history: bool | None = None):
    """(items (U, k), scores (U, k)): top_k of every history (arrays of catalogue rows), refusing a model that
    gives some user a non-finite vector or an overflowing score. New items (ids after the catalogue's) are ranked
    with the run's candidates, or alone with only_new. mask_history: the run's protocol when None."""
    candidates = data.split.valid.candidates
    if new is not None:
        candidates = extend_candidates(candidates, len(data.catalog), len(new.ids), only_new)
    masked = cfg.eval_repeats == "skip" if mask_history is None else mask_history
    # the whole sequence is the history (no target: top_k reads none)
    split = eval_split_of(list(range(len(sequences))), sequences, [0] * len(sequences), cfg.max_seq_len, masked,
                          candidates=candidates)
    # the run's precision, as evaluation ranks (evaluate.validate): the item table and the user vectors under its
    # autocast, the ranking products in fp32 (top_k); in fp32 a bf16 run's top-10 came out in another order
    with torch.no_grad(), autocast(cfg, torch.device(device)):
        table = model.item_table()  # histories hold catalogue items only
        checked = _CheckedUsers(model_user_fn(model, table))
        ranked = table if new is None else torch.cat([table, new.rows.to(table.device, table.dtype)])
        items, scores = top_k(checked, model.ranking_table(ranked), split, k, batch_size, torch.device(device),
                              cfg.eval_item_chunk)
    bad = sorted(set(checked.bad) | set(torch.nonzero(torch.isposinf(scores).any(1)).squeeze(1).tolist()))
    if bad:
        raise SystemExit(f"recommend: the model in {run_dir} gives non-finite scores for {len(bad)} of "
                         f"{len(user_names)} users (e.g. user {user_names[bad[0]]!r}): its weights have "
                         f"diverged; nothing was written")
    return items, scores


def popular_items(data, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The run's k most-trained candidate items (ids, training counts), most popular first; ties by item order."""
    counts = data.split.item_counts
    candidates = data.split.valid.candidates
    allowed = torch.ones(len(counts), dtype=torch.bool) if candidates is None else candidates.clone()
    allowed[0] = False  # the padding item
    ids = torch.nonzero(allowed).squeeze(1)
    order = torch.sort(counts[ids], descending=True, stable=True).indices[:k]
    return ids[order], counts[ids][order].double()


def recommend(run_dir: Path, users_file: Path | None, k: int, out: Path, device: str = "cpu",
              batch_size: int = 256, fallback: str = "none", new_items: Path | None = None,
              only_new: bool = False, unknown_items: str | None = None, user: str | None = None,
              fmt: str = "tsv") -> Written:
    """Write the top-k lists (users in file order; fmt tsv or jsonl); returns what was written. new_items: an items
    file of items the run never saw, ranked by their text (new_items.py); only_new ranks those alone. unknown_items:
    error|drop for the users file's items the run does not know (default: the run's setting). user: that user's
    list only."""
    if fmt not in FORMATS:
        raise SystemExit(f"recommend: --format {fmt!r}: expected one of {', '.join(FORMATS)}")
    if unknown_items not in (None, "error", "drop"):
        raise SystemExit(f"recommend: --unknown_items {unknown_items!r}: expected error or drop")
    if fallback not in FALLBACKS:
        raise SystemExit(f"recommend: --fallback {fallback!r}: expected one of {', '.join(FALLBACKS)}")
    if only_new and new_items is None:
        raise SystemExit("recommend: --only_new ranks the items of --new_items FILE alone; give --new_items")
    if only_new and fallback == "popularity":
        raise SystemExit("recommend: --only_new with --fallback popularity: new items have no training counts to "
                         "rank by; drop one of the two")
    check_output(out)
    for leftover in out.parent.glob(f".{out.name}.*.tmp"):  # a killed earlier write of this --out (atomic_path)
        leftover.unlink(missing_ok=True)
    holder = holder_of(run_dir)
    if holder is not None:
        log.warning("recommend: %s is still training (%s): ranking with its best.pt of the epochs so far", run_dir,
                    holder)
    ids = None if users_file is None else user_ids(users_file)  # before the model is built
    refuse = None if new_items is None else (lambda cfg: check_run_can_embed(cfg, new_items))
    model, data, cfg, _ = rebuild_run(run_dir, device, cache=True, before_build=refuse)
    if data.domains is not None:
        raise SystemExit(f"recommend: {run_dir} was trained on a pool of {len(data.domains)} datasets; recommend "
                         f"ranks one catalogue. Transfer the pool model to a target (source_checkpoint, or "
                         f"zero_shot=true) and recommend from that run")
    new = None
    if new_items is not None:
        with autocast(cfg, torch.device(device)):  # embedded in the run's precision, as its catalogue is
            new = embed_new_items(model, cfg, new_items, data.catalog)
    path = users_file or cfg.resolve(cfg.dataset) / cfg.users_file
    if ids is None:  # the run's own users file, known only from its config
        ids = user_ids(path)
    if user is not None:
        if user not in ids:
            raise SystemExit(f"recommend: --user {user!r} is not in the users file {path}")
        ids = [user]
    # with the popularity fallback, a file none of whose users has a known item still gets lists
    users = read_users(path, data.catalog.index, 1, unknown_items or cfg.unknown_items,
                       allow_empty=fallback == "popularity")
    wanted = set(ids)  # every user of the file, or the one --user names
    ranked = [(name, seq) for name, seq in zip(users.user_ids, users.sequences) if name in wanted]
    lists = {}
    if ranked:
        names = [name for name, _ in ranked]
        items, scores = rank_histories(model, data, cfg, [seq for _, seq in ranked], names, k, batch_size, device,
                                       run_dir, new, only_new)
        lists = {name: (items[row], scores[row]) for row, name in enumerate(names)}
    known = len(lists)
    popular = popular_items(data, k) if fallback == "popularity" else None
    if popular is not None:
        lists.update({name: popular for name in ids if name not in lists})
    longest = _write(out, ids, lists, data.catalog.ids + (new.ids if new is not None else []),
                     data.catalog.titles + (new.titles if new is not None else []), fmt)
    return Written(known, len(ids) - known, fallback, len(new.ids) if new is not None else 0, longest)


def _write(out: Path, ids: list[str], lists: dict, catalog_ids: list[str], titles: list[str], fmt: str) -> int:
    """The lists, users in file order, written to a temporary name and renamed (never a half-written --out);
    returns the longest list written."""
    longest = 0

    def row(user: str, rank: int, item: str, title: str, score: float) -> str:
        if fmt == "tsv":
            return f"{user}\t{rank}\t{item}\t{title}\t{score:.6g}\n"
        return json.dumps(dict(zip(COLUMNS, (user, rank, item, title, float(f"{score:.6g}")))),
                          ensure_ascii=False) + "\n"
    with atomic_path(out) as partial, open(partial, "w", encoding="utf-8") as handle:
        if fmt == "tsv":
            handle.write("\t".join(COLUMNS) + "\n")
        for user in ids:
            if user not in lists:
                continue
            items, scores = lists[user]
            rank = 0
            for item, score in zip(items.tolist(), scores.tolist()):
                if score != float("-inf"):  # fewer than k items left after masking (or NaN scores)
                    rank += 1
                    handle.write(row(user, rank, catalog_ids[item - 1], titles[item - 1], score))
            longest = max(longest, rank)
    return longest


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m adapter4rec recommend", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)  # --user is never taken as --users
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--users", type=Path, help="users file (default: the run's own users)")
    parser.add_argument("--user", help="one user of the users file: that user's list only")
    parser.add_argument("--unknown_items", choices=("error", "drop"),
                        help="the users file's items the run does not know: stop (error) or leave them out (drop); "
                             "default: the run's unknown_items")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", type=Path, help="default: <run_dir>/recs.tsv")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch_size", type=int, default=256, help="users per scoring chunk")
    parser.add_argument("--fallback", choices=FALLBACKS, default="none",
                        help="users with no known item: no list (none) or the run's most popular training items")
    parser.add_argument("--new_items", type=Path, help="an items file of items the run never saw "
                        "(item_id<TAB>title[<TAB>abstract]): ranked by their text with the run's items (text runs)")
    parser.add_argument("--only_new", action="store_true", help="rank the --new_items alone")
    parser.add_argument("--format", choices=FORMATS, default="tsv", help="tsv (a header line, then user, rank, "
                        "item, title, score) or jsonl (one JSON object per line with those keys)")
    opts = parser.parse_args(argv)
    if opts.k < 1:
        raise SystemExit(f"recommend: --k {opts.k}: expected a positive integer")
    out = opts.out or opts.run_dir / f"recs.{opts.format}"
    written = recommend(opts.run_dir, opts.users, opts.k, out, opts.device, opts.batch_size, opts.fallback,
                        opts.new_items, opts.only_new, opts.unknown_items, opts.user, opts.format)
    print(written.summary(out, opts.k))


if __name__ == "__main__":
    exit_on_user_error(main)
