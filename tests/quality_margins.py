"""The spread behind test_end_to_end's quality margins: its pipeline (transfer_pipeline) over several seeds.

    python tests/quality_margins.py [--seeds 12345,1,2] [--out DIR]

Runs the pipeline once per training seed on the tests' tiny data (synthetic, data seed 11, as the fixture) and
prints, per seed and as min / mean / std over the seeds, each run's test HR@10 and NDCG@10, popularity's, and
the gaps the tests assert (scratch - popularity, transfer - scratch). Also runs a deliberate target leak once
(every target user a second time with two items after its sequence, so each test transition is also a training
one): what the tests' upper bounds must stay below. About 4-5 minutes per seed on the 2-core CPU.
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_end_to_end import (FROZEN, FROZEN_ARGS, PIPELINE_RUNS, common, launch, results,  # noqa: E402
                             transfer_pipeline)

from adapter4rec.data.synthetic.text import generate  # noqa: E402

GAPS = {  # name -> (higher run, lower run; None = popularity)
    "scratch - popularity": ("frozen-scratch", None),
    "frozen transfer - scratch": ("frozen-transfer", "frozen-scratch"),
    "fine-tuning (1 epoch) - scratch": ("finetune", "frozen-scratch"),
    "side - scratch": ("adapter_side", "frozen-scratch"),
}


def metrics(out: Path, name: str, key: str = "test") -> dict:
    return {m: results(out, name)[key][m] for m in ("hr@10", "ndcg@10")}


def leaked_copy(target: Path, leak: Path) -> Path:
    """The target data with every user a second time, followed by two more items (its first two): the copy's
    training windows hold every original user's test transition; its own valid/test targets repeat history
    items and are skipped, so the test users are exactly the original ones."""
    leak.mkdir(parents=True, exist_ok=True)
    shutil.copy(target / "items.tsv", leak / "items.tsv")
    rows = [line.rstrip("\n").split("\t") for line in (target / "users.tsv").read_text().splitlines()]
    lines = [f"{user}\t{items}" for user, items in rows]
    lines += [f"{user}-again\t{items} {' '.join(items.split()[:2])}" for user, items in rows]
    (leak / "users.tsv").write_text("\n".join(lines) + "\n")
    return leak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", default="12345,1,2")
    parser.add_argument("--out", type=Path, default=None, help="working folder (default: a temporary one)")
    opts = parser.parse_args()
    root = opts.out or Path(tempfile.mkdtemp(prefix="quality-margins-"))
    data = root / "data"
    if not (data / "target" / "users.tsv").is_file():
        generate(data, seed=11, preset="tiny")
    gaps: dict[str, list[float]] = {}
    for seed in [int(s) for s in opts.seeds.split(",")]:
        out = transfer_pipeline(data, root / f"seed{seed}", root, f"--seed={seed}")
        row = {name: metrics(out, name) for name in PIPELINE_RUNS}
        row["popularity"] = metrics(out, "finetune", "popularity_test")
        print(f"seed {seed}: " + "; ".join(f"{n} {m['hr@10']:.4f} / {m['ndcg@10']:.4f}" for n, m in row.items()))
        for gap, (high, low) in GAPS.items():
            for m in ("hr@10", "ndcg@10"):
                gaps.setdefault(f"{gap} {m}", []).append(row[high][m] - row[low or "popularity"][m])
    for gap, values in gaps.items():
        spread = statistics.stdev(values) if len(values) > 1 else 0.0
        print(f"{gap}: min {min(values):.4f} mean {statistics.mean(values):.4f} std {spread:.4f}")
    out = root / f"seed{opts.seeds.split(',')[0]}"
    leak = leaked_copy(data / "target", root / "leak")
    frozen = common(leak, out, "all-MiniLM-L6-v2") + [f"--cache_dir={out / 'cache'}", *FROZEN_ARGS]
    launch(FROZEN, *frozen, "--source_checkpoint=", "--run_name=frozen-scratch-leak", cwd=root)
    print("leaked target, frozen from scratch: HR@10 {hr@10:.4f} / NDCG@10 {ndcg@10:.4f}".format(
        **metrics(out, "frozen-scratch-leak")))


if __name__ == "__main__":
    main()
