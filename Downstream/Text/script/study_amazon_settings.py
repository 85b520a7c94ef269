"""How the Amazon study's settings were chosen: variants of the cheap frozen-features model on Scientific, compared
on VALIDATION NDCG@10 (the selection metric; the test columns are printed once, for the record).

Every run: frozen MiniLM (every item's state cached) under a trained head + SASRec, no source, early stopping.
Variants: scoring (dot / cosine, tau 0.07), item pooling (CLS / mean), the token budget (32 / 64 title tokens),
and the loss: full-catalogue softmax against the in-batch softmax with each sampling correction (multiplicity,
popularity = the correction this project used before, inclusion). Data: as study_amazon.py (converted there).
Extra arguments go to every run; `--skip_done` continues; `--only=a,b` runs a subset.
"""
import json
import runpy
import sys
from pathlib import Path

from adapter4rec.launch import sweep
from adapter4rec.studies import RUNS_DIR

STUDY = runpy.run_path(str(Path(__file__).resolve().with_name("study_amazon.py")))  # its settings, not a copy
COMMON, FROZEN, SCIENTIFIC, convert = STUDY["COMMON"], STUDY["FROZEN"], STUDY["SCIENTIFIC"], STUDY["convert"]

INBATCH = dict(loss="inbatch", batch_size=64)
VARIANTS = {
    "settings-softmax-dot-cls": {},
    "settings-softmax-cosine": dict(score="cosine", temperature=0.07),
    "settings-softmax-mean": dict(item_pooling="mean"),
    "settings-softmax-64-tokens": dict(max_title_tokens=64),
    "settings-inbatch-multiplicity": dict(INBATCH, inbatch_correction="multiplicity"),
    "settings-inbatch-popularity": dict(INBATCH, inbatch_correction="popularity"),
    "settings-inbatch-inclusion": dict(INBATCH, inbatch_correction="inclusion"),
}


def table(names: list[str]) -> str:
    lines = ["| run | best epoch | valid NDCG@10 | test HR@10 | test NDCG@10 | unmasked HR@10 | unmasked NDCG@10 | "
             "train s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        path = RUNS_DIR / name / "results.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        test, unmasked = res["test"], res.get("test_no_mask") or {}
        lines.append(f"| {name} | {res['best_epoch']} | {res['valid_ndcg@10']:.4f} | {test['hr@10']:.4f} | "
                     f"{test['ndcg@10']:.4f} | {unmasked.get('hr@10', float('nan')):.4f} | "
                     f"{unmasked.get('ndcg@10', float('nan')):.4f} | {res['train_seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    extra = sys.argv[1:]
    only = [a.split("=", 1)[1].split(",") for a in extra if a.startswith("--only=")]
    names = only[-1] if only else list(VARIANTS)
    extra = [a for a in extra if not a.startswith("--only=")]
    dry = "--dry_run" in extra or "--dry-run" in extra
    if not dry:
        convert()
    for name in names:
        sweep(__file__, {**COMMON, **FROZEN, "dataset": str(SCIENTIFIC), **VARIANTS[name]}, {}, name=name, argv=extra)
    if not dry:
        text = table(list(VARIANTS))
        (RUNS_DIR / "report_amazon_settings.md").write_text(text + "\n")
        print(text)
