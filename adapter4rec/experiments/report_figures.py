"""Figures of adapter4rec.experiments.report: test HR@10 against trainable % (error bars over seeds) and learning curves
(validation HR@10 per epoch from metrics.jsonl, mean over seeds). Rows are those of `report.collect`."""
from __future__ import annotations

import json
import math
from pathlib import Path


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from cycler import cycler
    # 20 distinct colours: a study can have more methods than the default cycle's 10
    plt.rcParams["axes.prop_cycle"] = cycler(color=plt.cm.tab20.colors)
    return plt


def _save(fig, plt, path: Path) -> None:
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120, bbox_inches="tight")  # the legend below the axes is kept in the file
    plt.close(fig)


def _legend_below(ax, rows: int) -> None:
    """One line per entry under the plot: method names are long (a study's fused row takes 120 characters), so
    they never go on the plot itself, where they overlap."""
    ax.legend(loc="upper left", bbox_to_anchor=(0.0, -0.14), fontsize=7, frameon=False, ncol=1 if rows < 12 else 2)


def _size(rows: int) -> tuple[float, float]:
    return 8.0, 4.0 + 0.16 * rows  # the axes keep their height; the legend below grows with the rows


def figure(rows: list[dict], path: Path, title: str) -> None:
    """Test HR@10 (mean; bars: sample std where several seeds ran) against trainable % on a log axis."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=_size(len(rows)))
    for number, r in enumerate(rows, 1):
        x = max(r["pct"], 1e-3)
        std = r["hr@10_std"]
        label = f"{number}: {r['label']}" + (f" (n={r['n']})" if r["n"] > 1 else "")
        ax.errorbar(x, r["hr@10"], yerr=None if math.isnan(std) else std, fmt="o", markersize=6, capsize=3,
                    label=label)
        ax.annotate(str(number), (x, r["hr@10"]), fontsize=8, xytext=(4, 3), textcoords="offset points")
    ax.axhline(rows[0]["popularity"]["hr@10"], color="grey", linestyle="--", linewidth=1, label="popularity")
    ax.set_xscale("log")
    ax.margins(x=0.1)
    ax.set_xlabel("trainable parameters (% of the model, log scale)")
    ax.set_ylabel("test HR@10 (mean ± std over seeds)" if any(r["n"] > 1 for r in rows) else "test HR@10")
    ax.set_title(title, fontsize=10)
    _legend_below(ax, len(rows) + 1)
    _save(fig, plt, path)


def read_curve(run_dir: Path, metric: str = "hr@10") -> dict[int, float]:
    """{epoch: validation metric} from metrics.jsonl; a line repeated by a resumed run: the last one wins."""
    curve = {}
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        if line.strip():
            record = json.loads(line)
            curve[int(record["epoch"])] = float(record[metric])
    return curve


def mean_curve(run_dirs: list[Path], metric: str = "hr@10") -> tuple[list[int], list[float]]:
    """Epochs and the mean over the runs that reached each epoch (early stopping may end runs earlier)."""
    curves = [read_curve(d, metric) for d in run_dirs]
    epochs = sorted({e for c in curves for e in c})
    return epochs, [sum(c[e] for c in curves if e in c) / sum(e in c for c in curves) for e in epochs]


def curves(rows: list[dict], path: Path, title: str, metric: str = "hr@10") -> list[str]:
    """One line per row (mean over its seeds); returns the runs left out for lack of metrics.jsonl. Without a
    single curve (zero-shot runs train no epoch) no figure is written: raises ValueError saying so."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=_size(len(rows)))
    skipped, drawn = [], 0
    for r in rows:
        dirs = [d for d in r["dirs"] if (d / "metrics.jsonl").is_file()]
        skipped += [str(d) for d in r["dirs"] if d not in dirs]
        if dirs:
            epochs, values = mean_curve(dirs, metric)
            if not epochs:
                continue
            label = r["label"] + (f" (mean of {len(dirs)} seeds)" if len(dirs) > 1 else "")
            ax.plot([e + 1 for e in epochs], values, marker="o", markersize=3, label=label)
            drawn += 1
    if not drawn:
        plt.close(fig)
        raise ValueError(f"no run has a learning curve (metrics.jsonl with epochs); {path} not written")
    ax.xaxis.get_major_locator().set_params(integer=True)  # whole epochs
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"validation {metric.upper()}")
    ax.set_title(title, fontsize=10)
    _legend_below(ax, len(rows))
    _save(fig, plt, path)
    return skipped
