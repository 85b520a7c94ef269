"""Collect run directories into one comparison table (markdown + CSV) and figures.

    python -m adapter4rec report RUN_DIR... [--out runs/report] [--fig Fig/x.png] [--curves Fig/x_curves.png]
                                 [--title TEXT] [--allow_mixed_protocols]

Each run directory holds results.json and config.json (written by adapter4rec.training.train; metrics.jsonl for
--curves). Runs whose config.json differ only in `seed` (and in bookkeeping keys: run name, output folder,
device, ...) are one row: test metrics as mean ± sample standard deviation (n - 1) over the seeds, with the
number of seeds (a launcher's `--seeds 1,2,3` makes such runs). Beside the table: the popularity baseline on
the first run's test users, the from-scratch row when such a run is given, and one sentence per row that
transferred from a source checkpoint and scored a lower HR@10 than training from scratch (negative transfer).
Runs evaluated under different protocols are refused (the protocol is stamped in the header) unless
--allow_mixed_protocols. --fig: HR@10 against trainable %; --curves: validation HR@10 per epoch.
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import math
import re
import statistics
from pathlib import Path

from adapter4rec.config import RUNTIME_KEYS, Config
from adapter4rec.errors import UserError, exit_on_user_error

METRICS = ("hr@5", "hr@10", "hr@20", "ndcg@5", "ndcg@10", "ndcg@20", "mrr@10")
UNMASKED = ("hr@10", "ndcg@10", "mrr@10")  # results.json test_no_mask: the same checkpoint, history not masked
# keys that do not change what a run measures: runs differing only in these (and seed) are seeds of one row
BOOKKEEPING = RUNTIME_KEYS | {"seed"}
SEEDED_RUN = re.compile(r"-seed\d+(?=/[^/]+$)")  # the -seed<N> of a run folder in a checkpoint path
STD_NOTE = ("Metrics: mean ± sample standard deviation (n - 1 denominator) over seeds; a single value where one "
            "seed ran. Train s: mean over seeds.")


def method_name(cfg: dict) -> str:
    """A readable name for what a run trained: the method, then the item tower's extras (a whitening MoE head,
    fused target IDs, a cold-start study's share), ", LP-FT" when it started from a warm-start run's head (", in two
    stages" when that added target IDs to a trained run)."""
    if cfg.get("zero_shot"):
        return "zero-shot: the source model, no target training"
    name = _trained(cfg)
    if cfg.get("item_head", "linear") == "moe":
        name += f", whitening MoE head (k = {cfg.get('head_experts', 8)})"
    if cfg.get("item_tower") == "fused":
        name += f", + target item IDs ({cfg.get('item_fusion', 'sum')}" + (
            f", ID dropout {cfg['id_dropout']:g})" if cfg.get("id_dropout") else ")")
    if cfg.get("cold_items"):
        name += f", {cfg['cold_items']:.0%} of items cold"
    if not cfg.get("warm_start"):
        return name
    return f"{name}, in two stages" if cfg.get("item_tower") == "fused" else f"{name}, LP-FT"


def _trained(cfg: dict) -> str:
    if cfg.get("item_tower") == "id":
        return "ID-SASRec (target only)"
    if cfg.get("tune") == "all":
        if cfg.get("stage") == "pretrain":
            return "source pretraining"
        return "full fine-tuning" if cfg.get("source_checkpoint") else "from scratch (target only)"
    extras = [name for key, name in (("train_head", "head"), ("train_user_encoder", "user encoder"),
                                      ("tune_layernorm", "LN"), ("tune_bias", "bias")) if cfg.get(key)]
    adapter = cfg.get("adapter", "none")
    if adapter == "none":
        base = "BitFit" if cfg.get("tune_bias") else "frozen"
        extras = [e for e in extras if e != "bias" or base != "BitFit"]
    else:
        base = {"houlsby": "Houlsby", "parallel": "parallel Houlsby", "pfeiffer": "Pfeiffer", "lora": "LoRA",
                "compacter": "Compacter", "kadapter": "K-Adapter", "prompt": "prompt tuning"}.get(adapter, adapter)
        if adapter in ("houlsby", "parallel", "pfeiffer", "compacter") and cfg.get("adapter_sublayers") not in (
                None, "auto", "both" if adapter != "pfeiffer" else "ffn"):
            base += f" ({cfg['adapter_sublayers']})"
        if cfg.get("adapter_where", "both") != "both" and adapter != "prompt":
            base += f", {cfg['adapter_where']} encoder only"
        if cfg.get("adapter_layers") and adapter != "kadapter":
            base += f", top {cfg['adapter_layers']} layers"
    origin = " (target only)" if cfg.get("stage") == "downstream" and not cfg.get("source_checkpoint") else ""
    return base + (f" + {' + '.join(extras)}" if extras else "") + origin


def is_scratch(cfg: dict) -> bool:
    """Trained on the target only, the same model as the transfer rows (not the ID baseline)."""
    return (cfg.get("stage") == "downstream" and not cfg.get("source_checkpoint") and cfg.get("tune") == "all"
            and cfg.get("item_tower") != "id")


def comparable_config(cfg: dict) -> dict:
    """The config without bookkeeping keys; keys an older run did not record take today's defaults. A warm start
    from a seed's own first-stage run (runs/x-seed1/best.pt: launch.SEED_SUFFIX) counts as the same warm start."""
    full = {**dataclasses.asdict(Config()), **cfg}
    full["warm_start"] = SEEDED_RUN.sub("", str(full.get("warm_start") or ""))
    return {k: v for k, v in full.items() if k not in BOOKKEEPING}


class ReportError(UserError, ValueError):
    """A run folder the report cannot read; the message names the file."""


def _read_json(path: Path, keys: tuple[str, ...]) -> dict:
    """A run file's JSON with `keys` present, or one ReportError line naming the file (a half-written or
    truncated file, or one from another program)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ReportError(f"report: {path} cannot be read ({type(err).__name__}: {str(err).splitlines()[0][:120]}); "
                          f"is the run still being written, or the file truncated?") from None
    missing = [k for k in keys if not isinstance(data, dict) or k not in data]
    if missing:
        raise ReportError(f"report: {path} lacks {', '.join(missing)}: not a finished run's file")
    return data


def load_run(run_dir: Path) -> dict:
    res = _read_json(run_dir / "results.json", ("test", "popularity_test", "trainable_params", "total_params",
                                                  "train_seconds"))
    cfg = _read_json(run_dir / "config.json", ())
    ckpt = run_dir / "best.pt"
    return {"run": run_dir.name, "dir": run_dir, "config": cfg, "seed": cfg.get("seed"), "method": method_name(cfg),
            "trainable": res["trainable_params"], "total": res["total_params"],
            "ckpt_mb": ckpt.stat().st_size / 2**20 if ckpt.is_file() else float("nan"),
            "seconds": res["train_seconds"], "test": {m: res["test"].get(m, float("nan")) for m in METRICS},
            "unmasked": {m: (res.get("test_no_mask") or {}).get(m, float("nan")) for m in UNMASKED},
            "popularity": res["popularity_test"], "users": res["test"]["users"],
            "protocol": res.get("protocol", "(not recorded in results.json)")}


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1); the std is NaN for a single value, both are NaN where a run
    did not record the metric."""
    if any(math.isnan(v) for v in values):
        return float("nan"), float("nan")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else float("nan")


def summarize(members: list[dict]) -> dict:
    """One table row from the runs (seeds) of one configuration."""
    first = members[0]
    stems = {re.sub(r"-seed\d+$", "", m["run"]) for m in members}
    row = {"method": first["method"], "group": stems.pop() if len(stems) == 1 else first["run"],
           "runs": [m["run"] for m in members], "dirs": [m["dir"] for m in members],
           "seeds": [m["seed"] for m in members], "n": len(members), "config": first["config"],
           "trainable": first["trainable"], "total": first["total"],
           "pct": 100.0 * first["trainable"] / first["total"],
           "ckpt_mb": statistics.fmean(m["ckpt_mb"] for m in members),
           "seconds": statistics.fmean(m["seconds"] for m in members), "popularity": first["popularity"],
           "users": first["users"], "protocol": first["protocol"]}
    for metric in METRICS:
        row[metric], row[metric + "_std"] = mean_std([m["test"][metric] for m in members])
    for metric in UNMASKED:
        row["unmasked " + metric], row["unmasked " + metric + "_std"] = mean_std([m["unmasked"][metric]
                                                                                 for m in members])
    return row


def group_runs(runs: list[dict]) -> list[dict]:
    """Rows in the order their first run was given; a method name used by several rows gets the run name."""
    groups: dict[str, list[dict]] = {}
    for run in runs:
        groups.setdefault(json.dumps(comparable_config(run["config"]), sort_keys=True), []).append(run)
    rows = [summarize(members) for members in groups.values()]
    names = [r["method"] for r in rows]
    for row in rows:
        row["label"] = row["method"] if names.count(row["method"]) == 1 else f"{row['method']} [{row['group']}]"
    return rows


def check_protocols(runs: list[dict], allow_mixed: bool) -> list[str]:
    """The distinct protocols (in order). Several: SystemExit naming the runs, unless `allow_mixed`."""
    by_protocol: dict[str, list[str]] = {}
    for run in runs:
        by_protocol.setdefault(run["protocol"], []).append(run["run"])
    if len(by_protocol) > 1 and not allow_mixed:
        listing = "; ".join(f"[{', '.join(names)}] {protocol}" for protocol, names in by_protocol.items())
        raise SystemExit(f"report: the runs were evaluated under different protocols, so their numbers do not "
                         f"compare in one table: {listing}. Report them separately, or pass "
                         f"--allow_mixed_protocols to put them together anyway")
    return list(by_protocol)


def collect(run_dirs: list[Path], allow_mixed_protocols: bool = False) -> list[dict]:
    """Load and check the run directories; one row per configuration (its seeds pooled)."""
    missing = [str(r) for r in run_dirs if not (r / "results.json").is_file()]
    if missing:
        raise SystemExit(f"report: no results.json in {', '.join(missing)} (unfinished or not a run directory)")
    runs = [load_run(r) for r in run_dirs]
    check_protocols(runs, allow_mixed_protocols)
    return group_runs(runs)


def _differences(a: dict, b: dict) -> int:
    ca, cb = comparable_config(a), comparable_config(b)
    return sum(ca.get(k) != cb.get(k) for k in set(ca) | set(cb))


def transfer_check(rows: list[dict]) -> list[str]:
    """Sentences under the table: negative transfer (HR@10 mean below training from scratch), or none."""
    transferred = [r for r in rows if r["config"].get("source_checkpoint")]
    if not transferred:
        return []
    scratch = [r for r in rows if is_scratch(r["config"])]
    if not scratch:
        return ["Negative transfer could not be checked: no from-scratch run (downstream, empty source_checkpoint, "
                "tune=all) is among the inputs."]
    lines = []
    for row in transferred:  # with several scratch rows, the one whose config is closest to this row's
        base = min(scratch, key=lambda s: _differences(row["config"], s["config"]))
        which = f" [{base['group']}]" if len(scratch) > 1 else ""
        if row["hr@10"] < base["hr@10"]:
            stds = [s for s in (row["hr@10_std"], base["hr@10_std"]) if not math.isnan(s)]
            spread = max(stds, default=float("nan"))  # NaN (comparison False) when both ran one seed
            within = "; the gap is within one standard deviation over seeds" \
                if base["hr@10"] - row["hr@10"] <= spread else ""
            lines.append(f"Negative transfer: {row['label']} (HR@10 {row['hr@10']:.4f}) is below training from "
                         f"scratch{which} ({base['hr@10']:.4f}){within}.")
    if not lines:
        value = f" ({scratch[0]['hr@10']:.4f})" if len(scratch) == 1 else ""
        lines.append(f"No negative transfer: every row transferred from a source checkpoint has HR@10 at or above "
                     f"training from scratch{value}.")
    return lines


def _cell(row: dict, metric: str) -> str:
    std = row[metric + "_std"]
    return f"{row[metric]:.4f}" if math.isnan(std) else f"{row[metric]:.4f} ± {std:.4f}"


def unmasked_table(rows: list[dict]) -> list[str]:
    """The same checkpoints tested without history masking (every test user; the RecBole protocol of the
    published numbers), for the rows that recorded it."""
    have = [r for r in rows if not math.isnan(r["unmasked hr@10"])]
    if not have:
        return []
    lines = ["", "Without history masking (same checkpoints, every test user):", "",
             "| method | HR@10 | NDCG@10 | MRR@10 |", "|---|---:|---:|---:|"]
    for r in have:
        lines.append(f"| {r['label']} | " + " | ".join(_cell(r, "unmasked " + m) for m in UNMASKED) + " |")
    return lines


def markdown(rows: list[dict]) -> str:
    first = rows[0]
    protocols = list(dict.fromkeys(r["protocol"] for r in rows))
    header = f"Protocol: {protocols[0]}." if len(protocols) == 1 else \
        "Protocols DIFFER between rows (--allow_mixed_protocols): " + " | ".join(protocols) + "."
    lines = [f"Test users: {first['users']}. {header}", "", STD_NOTE, "",
             "| method | seeds | trainable params | trainable % | checkpoint MB | HR@5 | HR@10 | HR@20 | NDCG@5 | "
             "NDCG@10 | NDCG@20 | MRR@10 | train s |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pop = first["popularity"]
    lines.append("| popularity | - | 0 | 0 | - | " + " | ".join(f"{pop.get(m, float('nan')):.4f}" for m in METRICS)
                 + " | - |")
    for r in rows:
        ckpt = "-" if math.isnan(r["ckpt_mb"]) else f"{r['ckpt_mb']:.2f}"  # no best.pt in the run directory
        lines.append(f"| {r['label']} | {r['n']} | {r['trainable']:,} | {r['pct']:.3f} | {ckpt} | "
                     + " | ".join(_cell(r, m) for m in METRICS) + f" | {r['seconds']:.0f} |")
    lines += unmasked_table(rows)
    lines += [""] + transfer_check(rows)
    users = sorted({r["users"] for r in rows})
    if len(users) > 1:
        lines.append(f"Note: the rows have different numbers of test users {users}; the popularity row is that of "
                     f"{first['runs'][0]}.")
    return "\n".join(lines).rstrip()


def write_csv(rows: list[dict], path: Path) -> None:
    """One line per row (popularity first): mean and std columns per metric; std empty for one seed,
    checkpoint_mb empty without best.pt."""
    fields = ["method", "group", "runs", "seeds", "n_seeds", "trainable_params", "total_params", "trainable_pct",
              "checkpoint_mb", "train_seconds_mean"] + [f"{m}_{s}" for m in METRICS for s in ("mean", "std")]
    pop = rows[0]["popularity"]
    lines = [{"method": "popularity", "trainable_params": 0, "trainable_pct": 0,
              **{f"{m}_mean": pop.get(m, "") for m in METRICS}}]
    def blank_nan(value: float):
        return "" if math.isnan(value) else value

    for r in rows:
        line = {"method": r["label"], "group": r["group"], "runs": ";".join(r["runs"]),
                "seeds": ";".join(str(s) for s in r["seeds"]), "n_seeds": r["n"], "trainable_params": r["trainable"],
                "total_params": r["total"], "trainable_pct": r["pct"], "checkpoint_mb": blank_nan(r["ckpt_mb"]),
                "train_seconds_mean": r["seconds"]}
        for m in METRICS:
            line[f"{m}_mean"], line[f"{m}_std"] = r[m], blank_nan(r[m + "_std"])
        lines.append(line)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=fields)
        writer.writeheader()
        writer.writerows(lines)


def main(argv: list[str] | None = None) -> str:
    from adapter4rec.experiments.report_figures import curves, figure

    parser = argparse.ArgumentParser(prog="python -m adapter4rec report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--out", type=Path, help="write <out>.md and <out>.csv")
    parser.add_argument("--fig", type=Path, help="write an HR@10 vs trainable-%% figure here (PNG)")
    parser.add_argument("--curves", type=Path, help="write validation HR@10 per epoch, one line per row (PNG)")
    parser.add_argument("--title", default="HR@10 against trainable parameters", help="title of the figures")
    parser.add_argument("--allow_mixed_protocols", "--allow-mixed-protocols", action="store_true",
                        help="put runs evaluated under different protocols into one table (marked in the header)")
    opts = parser.parse_args(argv)
    unique = list(dict.fromkeys(path.resolve() for path in opts.runs))  # a folder given twice is one run
    rows = collect(unique, opts.allow_mixed_protocols)
    text = markdown(rows)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.with_suffix(".md").write_text(text + "\n")
        write_csv(rows, opts.out.with_suffix(".csv"))
    if opts.fig:
        figure(rows, opts.fig, opts.title)
    if opts.curves:
        title = "Validation HR@10 per epoch" + ("" if opts.title == parser.get_default("title") else f": {opts.title}")
        try:
            for skipped in curves(rows, opts.curves, title):
                print(f"report: {skipped} has no metrics.jsonl; left out of the learning curves")
        except ValueError as err:
            print(f"report: --curves: {err}")
    print(text)
    return text


if __name__ == "__main__":
    exit_on_user_error(main)
