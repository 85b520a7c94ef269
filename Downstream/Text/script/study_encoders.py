"""Study on real data: which pretrained text encoder under the best cached row, on Amazon Scientific.

The row is study_amazon.py's side network + head + user encoder over the frozen encoder's cached layer states,
target only (a source model transfers into its own encoder only), with each encoder placed in pretrained_models/
(`make encoders` places the optional ones; pretrained_models/README.md says what each is and how it was checked):
  all-MiniLM-L6-v2         6 layers x 384, sentence-embedding fine-tune of MiniLM (make setup places it)
  paraphrase-MiniLM-L3-v2  3 layers x 384, paraphrase fine-tune
  multilingual-e5-small    12 layers x 384, e5 retrieval pretraining (its 4-bit weights dequantised), no prefix
  sre-MiniLM-L6            6 layers x 384, MiniLM-L6 fine-tuned further (its purpose is not documented)
Precision auto (bf16 where the CPU has it in hardware, else fp32), so every row runs alike on a given machine.
Every run stops early on validation NDCG@10 and is tested once, history masked and not. The encoder to use is
chosen on the mean validation NDCG@10 over seeds; the table prints test numbers of every row, the cost of the
state cache (built once per encoder, shared by its seeds) and of an epoch.

    .venv/bin/python Downstream/Text/script/study_encoders.py --jobs=2 [--seeds 1,2] [--only=enc-e5-small]
"""
import json
import re
import statistics
import sys
from pathlib import Path

from study_amazon import COMMON, RUNS as AMAZON_RUNS, SCIENTIFIC, convert

from adapter4rec.experiments.launch import JobQueue, split_jobs, sweep
from adapter4rec.experiments.studies import RUNS_DIR, report, run_dirs, select_runs

ENCODERS = {"minilm-l6": "all-MiniLM-L6-v2", "minilm-l3": "paraphrase-MiniLM-L3-v2",
            "e5-small": "multilingual-e5-small", "sre-l6": "sre-MiniLM-L6"}
ROW = dict(AMAZON_RUNS["amazon-sci-side-head-user-scratch"], dataset=str(SCIENTIFIC), precision="auto")
RUNS = {f"enc-{short}": dict(ROW, item_encoder=folder) for short, folder in ENCODERS.items()}
BUILT = re.compile(r"cache states-\S+ built in ([0-9.]+) s")  # the item-state store's own line


def cost(run_dir: Path) -> tuple[float | None, float]:
    """(seconds the item-state cache took to build in this run, or None where it was found built; mean seconds
    per training epoch)."""
    log = (run_dir / "log.txt").read_text(encoding="utf-8")
    built = [float(s) for s in BUILT.findall(log)]
    epochs = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return (sum(built) if built else None), epochs[-1]["seconds"] / len(epochs)  # "seconds": the run's so far


def mean_std(values: list[float]) -> str:
    return f"{values[0]:.4f}" if len(values) == 1 else \
        f"{statistics.mean(values):.4f} ± {statistics.stdev(values):.4f}"


def encoder_table(names: list[str]) -> str:
    rows = ["| encoder | seeds | valid NDCG@10 | HR@10 masked | NDCG@10 masked | HR@10 unmasked | NDCG@10 unmasked "
            "| state cache s | s / epoch | precision |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for name in names:
        dirs = [d for d in run_dirs([name]) if (d / "results.json").is_file()]
        if not dirs:
            continue
        res = [json.loads((d / "results.json").read_text()) for d in dirs]
        costs = [cost(d) for d in dirs]
        built = [b for b, _ in costs if b is not None]
        precision = json.loads((dirs[0] / "config.json").read_text()).get("precision", "?")
        rows.append(f"| {RUNS[name]['item_encoder']} | {len(dirs)} | {mean_std([r['valid_ndcg@10'] for r in res])} "
                    f"| {mean_std([r['test']['hr@10'] for r in res])} | {mean_std([r['test']['ndcg@10'] for r in res])} "
                    f"| {mean_std([r['test_no_mask']['hr@10'] for r in res])} "
                    f"| {mean_std([r['test_no_mask']['ndcg@10'] for r in res])} "
                    f"| {built[0] if built else '-'} | {statistics.mean(s for _, s in costs):.1f} | {precision} |")
    return "\n".join(rows)


if __name__ == "__main__":
    argv, jobs = split_jobs(sys.argv[1:])
    names, extra = select_runs(argv, RUNS, {}, "study_encoders.py")
    dry = "--dry_run" in extra or "--dry-run" in extra
    queue = JobQueue(jobs, RUNS_DIR / "launch-logs") if jobs > 1 else None
    if not dry:
        convert()
    for name in names:
        sweep(__file__, {**COMMON, **RUNS[name]}, {}, name=name, argv=extra, queue=queue)
    if queue is not None:
        queue.wait()
    if dry:
        sys.exit(0)
    done = [n for n in RUNS if (RUNS_DIR / n / "results.json").is_file()]
    if done:
        report(done, "report_encoders", "encoders_hr10", "Text encoders on Scientific: HR@10 vs trainable parameters")
        table = encoder_table(done)
        (RUNS_DIR / "report_encoders_cost.md").write_text(table + "\n", encoding="utf-8")
        print(table)
