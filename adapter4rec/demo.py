"""`make demo`: embedded default data -> source pretraining -> target transfer -> results table.

Runs the real launchers (Pretraining/Text/script/sm_base_sasrec.py, Downstream/Text/script/finetune.py)
with their own constants, so the demo is exactly what a user gets from `python <launcher>.py`.
`python -m adapter4rec.demo --help` lists the options.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

from adapter4rec.config import REPO_ROOT
from adapter4rec.data.synthetic import generate

PRETRAIN = REPO_ROOT / "Pretraining" / "Text" / "script" / "sm_base_sasrec.py"
FINETUNE = REPO_ROOT / "Downstream" / "Text" / "script" / "finetune.py"


def ensure_data(out: Path, seed: int) -> None:
    stamp = out / "generated.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("seed") == seed:
        return
    summary = generate(out, seed=seed, preset="default")
    stamp.write_text(json.dumps(summary, indent=1))


def launch(script: Path, extra: list[str]) -> None:
    subprocess.run([sys.executable, str(script), *extra], check=True)


def results_of(runs: Path, name: str) -> dict:
    return json.loads((runs / name / "results.json").read_text())


def table(runs: Path) -> str:
    """Markdown table of the target-domain test metrics (plus the source run for reference)."""
    scratch, transfer = results_of(runs, "finetune-scratch"), results_of(runs, "finetune")
    source = results_of(runs, "sm_base_sasrec")
    rows = [("Popularity (target train counts)", transfer["popularity_test"], "-", 0, None),
            ("SASRec + MiniLM, target only (scratch)", scratch["test"], "target", scratch["trainable_params"],
             scratch["train_seconds"]),
            ("SASRec + MiniLM, source -> target full fine-tuning", transfer["test"], "source+target",
             transfer["trainable_params"], transfer["train_seconds"])]
    lines = [f"Target domain (synthetic Adressa-format news), {transfer['data']['test_users']} test users, "
             f"{transfer['data']['items']} items. Protocol: {transfer['protocol']}.", "",
             "| method | trained on | trainable params | HR@10 | NDCG@10 | HR@20 | NDCG@20 | train s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, m, data, params, secs in rows:
        lines.append(f"| {name} | {data} | {params:,} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['hr@20']:.4f} | "
                     f"{m['ndcg@20']:.4f} | {'-' if secs is None else f'{secs:.0f}'} |")
    lines += ["", f"Source pretraining (synthetic MIND-format news, {source['data']['test_users']} test users): "
              f"test HR@10 {source['test']['hr@10']:.4f}, NDCG@10 {source['test']['ndcg@10']:.4f} "
              f"(popularity HR@10 {source['popularity_test']['hr@10']:.4f}), {source['train_seconds']:.0f} s."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=2024, help="seed of the synthetic data")
    parser.add_argument("--table_only", action="store_true", help="print the table of existing runs")
    opts = parser.parse_args(argv)
    runs = REPO_ROOT / "runs"
    started = time.time()
    if not opts.table_only:
        ensure_data(REPO_ROOT / "Dataset" / "default", opts.seed)
        launch(PRETRAIN, [])
        launch(FINETUNE, [])
        launch(FINETUNE, ["--source_checkpoint=", "--run_name=finetune-scratch"])
    text = table(runs)
    (runs / "demo_results.md").write_text(text + "\n")
    print("\n" + text)
    if not opts.table_only:
        print(f"\ndemo finished in {time.time() - started:.0f} s; table saved to {runs / 'demo_results.md'}")


if __name__ == "__main__":
    main()
