"""Collect run directories into one comparison table (markdown + CSV) and an HR@10-vs-trainable-% figure.

    python -m adapter4rec.report runs/finetune runs/adapter_houlsby ... [--out runs/report] [--fig Fig/x.png]

Each run directory must hold results.json and config.json (written by adapter4rec.train). The popularity
baseline of the first run's test users is added as a row; the protocol line comes from the runs.
"""
from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path

METRICS = ("hr@10", "ndcg@10", "hr@20", "ndcg@20")


def method_name(cfg: dict) -> str:
    """A readable name for what a run trained."""
    if cfg.get("item_tower") == "id":
        return "ID-SASRec (target only)"
    if cfg.get("tune") == "all":
        if cfg.get("stage") == "pretrain":
            return "source pretraining"
        return "full fine-tuning" if cfg.get("source_checkpoint") else "from scratch (target only)"
    extras = [name for key, name in (("train_head", "head"), ("tune_layernorm", "LN"), ("tune_bias", "bias"))
              if cfg.get(key)]
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
    return base + (f" + {' + '.join(extras)}" if extras else "")


def load_run(run_dir: Path) -> dict:
    res = json.loads((run_dir / "results.json").read_text())
    cfg = json.loads((run_dir / "config.json").read_text())
    ckpt = run_dir / "best.pt"
    return {"run": run_dir.name, "method": method_name(cfg), "trainable": res["trainable_params"],
            "total": res["total_params"], "pct": 100.0 * res["trainable_params"] / res["total_params"],
            "ckpt_mb": ckpt.stat().st_size / 2**20 if ckpt.is_file() else float("nan"),
            "seconds": res["train_seconds"], **{m: res["test"][m] for m in METRICS},
            "popularity": res["popularity_test"], "protocol": res["protocol"], "users": res["test"]["users"]}


def markdown(rows: list[dict]) -> str:
    first = rows[0]
    lines = [f"Test users: {first['users']}. Protocol: {first['protocol']}.", "",
             "| method | trainable params | trainable % | checkpoint MB | HR@10 | NDCG@10 | HR@20 | NDCG@20 | train s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    pop = first["popularity"]
    lines.append(f"| popularity | 0 | 0 | - | {pop['hr@10']:.4f} | {pop['ndcg@10']:.4f} | {pop['hr@20']:.4f} | "
                 f"{pop['ndcg@20']:.4f} | - |")
    for r in rows:
        lines.append(f"| {r['method']} | {r['trainable']:,} | {r['pct']:.3f} | {r['ckpt_mb']:.2f} | {r['hr@10']:.4f} | "
                     f"{r['ndcg@10']:.4f} | {r['hr@20']:.4f} | {r['ndcg@20']:.4f} | {r['seconds']:.0f} |")
    return "\n".join(lines)


def figure(rows: list[dict], path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for r in rows:
        ax.scatter(max(r["pct"], 1e-3), r["hr@10"], s=40)
        ax.annotate(r["method"], (max(r["pct"], 1e-3), r["hr@10"]), fontsize=8, xytext=(4, 3),
                    textcoords="offset points")
    ax.axhline(rows[0]["popularity"]["hr@10"], color="grey", linestyle="--", linewidth=1, label="popularity")
    ax.set_xscale("log")
    ax.margins(x=0.2)  # room for the labels of the rightmost points
    ax.set_xlabel("trainable parameters (% of the model, log scale)")
    ax.set_ylabel("test HR@10")
    ax.set_title(title, fontsize=10)
    ax.legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", type=Path, help="run directories")
    parser.add_argument("--out", type=Path, help="write <out>.md and <out>.csv")
    parser.add_argument("--fig", type=Path, help="write an HR@10 vs trainable-% figure here (PNG)")
    parser.add_argument("--title", default="HR@10 against trainable parameters")
    opts = parser.parse_args(argv)
    missing = [str(r) for r in opts.runs if not (r / "results.json").is_file()]
    if missing:
        raise SystemExit(f"report: no results.json in {', '.join(missing)} (unfinished or not a run directory)")
    rows = [load_run(r) for r in opts.runs]
    text = markdown(rows)
    if opts.out:
        opts.out.parent.mkdir(parents=True, exist_ok=True)
        opts.out.with_suffix(".md").write_text(text + "\n")
        with open(opts.out.with_suffix(".csv"), "w", newline="") as handle:
            keys = [k for k in rows[0] if k not in ("popularity", "protocol")]
            writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(rows)
    if opts.fig:
        figure(rows, opts.fig, opts.title)
    print(text)
    return text


if __name__ == "__main__":
    main()
