"""Top-K recommendations out of a finished run, with the scorer evaluation uses.

    python -m adapter4rec.recommend RUN_DIR [--users FILE] [--k 20] [--out recs.tsv] [--device cpu]

The model is rebuilt from RUN_DIR/best.pt as the run built it (full, PEFT adapters over the source checkpoint,
any item tower), every item is encoded once, and each user's next items are ranked over the run's candidate items
with the user's whole history masked (unless the run used eval_repeats=no_mask), chunked in users and items.
Users: those of the run's users file (their whole sequence is the history), or of --users FILE in the same
format, read against the run's items file (unknown items handled as the run's `unknown_items` says).
Output: a TSV `user<TAB>rank<TAB>item<TAB>score`, K lines per user, best first.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import torch

from adapter4rec.data.files import read_users
from adapter4rec.data.split import eval_split_of
from adapter4rec.evaluate import model_user_fn, top_k
from adapter4rec.export import rebuild_run
from adapter4rec.rundir import exit_on_user_error


def recommend(run_dir: Path, users_file: Path | None, k: int, out: Path, device: str = "cpu",
              batch_size: int = 256) -> int:
    """Write the top-k TSV; returns the number of users written."""
    model, data, cfg, _ = rebuild_run(run_dir, device, cache=True)
    if users_file is None:
        users = read_users(cfg.resolve(cfg.dataset) / cfg.users_file, data.catalog.index, 1, cfg.unknown_items)
    else:
        users = read_users(users_file, data.catalog.index, 1, cfg.unknown_items)
    # the whole sequence is the history (no target: top_k reads none)
    split = eval_split_of(list(range(len(users.sequences))), users.sequences, [0] * len(users.sequences),
                          cfg.max_seq_len, cfg.eval_repeats == "skip", candidates=data.split.valid.candidates)
    with torch.no_grad():
        table = model.item_table()
        items, scores = top_k(model_user_fn(model, table), model.ranking_table(table), split, k, batch_size,
                              torch.device(device), cfg.eval_item_chunk)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", encoding="utf-8") as handle:
        for row, user in enumerate(users.user_ids):
            for rank, (item, score) in enumerate(zip(items[row].tolist(), scores[row].tolist()), 1):
                if score != float("-inf"):  # fewer than k items left after masking
                    handle.write(f"{user}\t{rank}\t{data.catalog.ids[item - 1]}\t{score:.6g}\n")
    return len(users.user_ids)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--users", type=Path, help="users file (default: the run's own users)")
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--out", type=Path, help="default: <run_dir>/recs.tsv")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch_size", type=int, default=256, help="users per scoring chunk")
    opts = parser.parse_args(argv)
    if opts.k < 1:
        raise SystemExit(f"recommend: --k {opts.k}: expected a positive integer")
    out = opts.out or opts.run_dir / "recs.tsv"
    count = recommend(opts.run_dir, opts.users, opts.k, out, opts.device, opts.batch_size)
    print(f"wrote {out}: top-{opts.k} items of {count} users")


if __name__ == "__main__":
    exit_on_user_error(main)
