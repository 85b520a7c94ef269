"""What the study scripts share: run a list of launchers, then report them (table, CSV, figures in Fig/).

A study script holds only its constants (which launchers, with which extra arguments, under which run
names) and calls `run_study(...)`. Arguments given to the study script are passed to every launcher, so
`--epochs=1` makes a try-out, `--seeds 1,2,3` repeats every run per seed (the report groups the seeds),
`--skip_done` continues an interrupted study and `--dry_run` prints the commands.
Scaling studies (`scaling_study`) repeat runs over nested fractions of the users and draw HR@10 against
the fraction; they loop over their own SEEDS (a transfer run needs its own seed's source run).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from adapter4rec.config import REPO_ROOT
from adapter4rec.experiments.launch import run_or_exit

RUNS_DIR = REPO_ROOT / "runs"


def launch(script: Path, args: list[str], extra: list[str]) -> None:
    run_or_exit([sys.executable, str(script), *args, *extra], f"launcher {script.name}")


def refuse_run_name(extra: list[str], script: str) -> None:
    """A study names each of its runs; a --run_name passed through to every launcher would give them all (a
    source run too) one name, so each run would overwrite or --skip_done the one before."""
    given = [a for a in extra if a.partition("=")[0] in ("--run_name", "--run-name")]
    if given:
        raise SystemExit(f"{script}: {given[0]} cannot be given to a study, which names each of its runs itself; "
                         f"run one launcher for a run of your own, or pick the study's runs with --only where "
                         f"it has one")


def select_runs(extra: list[str], runs: dict, sources: dict, script: str) -> tuple[list[str], list[str]]:
    """(run names to run, the remaining arguments) of a study from --only=a,b (default: every run)."""
    refuse_run_name(extra, script)
    only = [a for a in extra if a.startswith("--only=")]
    names = only[-1].split("=", 1)[1].split(",") if only else list(runs)
    unknown = sorted(set(names) - set(runs) - set(sources))
    if unknown:
        raise SystemExit(f"{script}: unknown run(s) {unknown}; known: {', '.join([*sources, *runs])}")
    return names, [a for a in extra if not a.startswith("--only=")]


def sources_to_start(names: list[str], runs: dict, sources: dict, runs_dir: Path) -> list[str]:
    """The source runs to start: each one a chosen run reads (`runs/<source>/best.pt`), or chosen itself, except
    that a finished source (results.json) not chosen by name is reused as it is (its CPU time is not spent again,
    and extra arguments meant for the target runs never reach it)."""
    chosen = []
    for source in sources:
        read = any(runs[n].get("source_checkpoint") == f"runs/{source}/best.pt" for n in names if n in runs)
        if source not in names and read and (runs_dir / source / "results.json").is_file():
            print(f"= {source}: finished (results.json), reused; --only={source} runs it", flush=True)
        elif source in names or read:
            chosen.append(source)
    return chosen


def run_dirs(names: list[str]) -> list[Path]:
    """Each name's run directory and its per-seed directories (`<name>-seed<N>`, from --seeds): the report pools
    the runs of one configuration into one row, so a run made without --seeds and later seeds of it count
    together (the base run used to be dropped as soon as a seeded one existed). A folder without results.json
    (a run still going, e.g. another study's seed beside this one, or one that stopped) is left out and named."""
    found = []
    for name in names:
        seeded = sorted(RUNS_DIR.glob(f"{name}-seed*"))
        base = [RUNS_DIR / name] if (RUNS_DIR / name).is_dir() or not seeded else []
        found += base + seeded
    unfinished = [p for p in found if not (p / "results.json").is_file()]
    if unfinished:
        print(f"report: {len(unfinished)} run folder(s) without results.json left out (unfinished or still "
              f"running): {', '.join(p.name for p in unfinished)}", flush=True)
    return [p for p in found if p not in unfinished]


def report(names: list[str], out: str, fig: str, title: str, curves: bool = True) -> None:
    """`python -m adapter4rec report` over the runs: runs/<out>.{md,csv}, Fig/<fig>.png (+ learning curves)."""
    args = [str(p) for p in run_dirs(names)] + ["--out", str(RUNS_DIR / out), "--fig",
                                                  str(REPO_ROOT / "Fig" / f"{fig}.png"), "--title", title]
    if curves:
        args += ["--curves", str(REPO_ROOT / "Fig" / f"{fig}_curves.png")]
    subprocess.run([sys.executable, "-m", "adapter4rec.experiments.report", *args], check=True)


def run_study(script_dir: Path, runs: list[tuple[str, list[str], str]], extra: list[str], out: str, fig: str,
              title: str) -> None:
    """runs: (launcher file in script_dir, its extra arguments, run name = --run_name)."""
    refuse_run_name(extra, "study")
    for launcher, args, name in runs:
        launch(script_dir / launcher, [*args, f"--run_name={name}"], extra)
    if "--dry_run" not in extra and "--dry-run" not in extra:
        report([name for *_, name in runs], out, fig, title)


def scaling_study(tree: str, side: str, fractions: list[float], seeds: list[int], extra: list[str]) -> None:
    """Source data scaled up (side="source": pretrain on each fraction of the source users, then transfer
    each with full fine-tuning and Houlsby) or target data scaled down (side="target": full fine-tuning,
    Houlsby and from-scratch on each fraction of the target users, from the default source checkpoint).
    tree: "Text" or "CV". Fractions are nested subsets (user_fraction), seeds repeat every run."""
    refuse_run_name(extra, f"{tree} {side} scaling study")
    pre = REPO_ROOT / "Pretraining" / tree / "script"
    down = REPO_ROOT / "Downstream" / tree / "script"
    launchers = {"Text": ("sm_base_sasrec.py", "finetune.py", "adapter_houlsby.py"),
                 "CV": ("sm_vit_sasrec.py", "sm_vit.py", "sm_vit_adapter.py")}[tree]
    methods = {"full fine-tuning": (launchers[1], []), "Houlsby adapters": (launchers[2], [])}
    if side == "target":
        methods["from scratch"] = (launchers[1], ["--source_checkpoint="])
    series: dict[str, list[tuple[float, list[str]]]] = {m: [] for m in methods}
    stem = f"{tree.lower()}-{side}-scaling"
    for fraction in fractions:
        names = {m: [] for m in methods}
        for seed in seeds:
            tag = f"{stem}-f{fraction:g}-seed{seed}"
            source = []
            if side == "source":
                launch(pre / launchers[0], [f"--user_fraction={fraction}", f"--seed={seed}", f"--run_name={tag}"],
                       extra)
                source = [f"--source_checkpoint=runs/{tag}/best.pt"]
            target_fraction = [f"--user_fraction={fraction}"] if side == "target" else []
            for method, (launcher, args) in methods.items():
                name = f"{tag}-{method.split()[0].lower()}"
                launch(down / launcher, [*source, *args, *target_fraction, f"--seed={seed}", f"--run_name={name}"],
                       extra)
                names[method].append(name)
        for method in methods:
            series[method].append((fraction, names[method]))
    if "--dry_run" in extra or "--dry-run" in extra:
        return
    what = "source users used for pretraining" if side == "source" else "target users used for training"
    table = scaling_figure(series, REPO_ROOT / "Fig" / f"{stem}.png", f"{what} (%)",
                           f"{tree}: test HR@10 against the share of {what.split(' used')[0]}")
    (RUNS_DIR / f"report_{stem}.md").write_text(f"Test HR@10 (mean over seeds {seeds}) by share of {what}.\n\n"
                                                f"{table}\n")
    print(table)


def scaling_figure(series: dict[str, list[tuple[float, list[str]]]], path: Path, xlabel: str, title: str) -> str:
    """HR@10 (mean over seeds) against the data fraction, one line per method; returns a markdown table.

    series: method -> [(fraction, run names of the seeds), ...]."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    fractions = [f for f, _ in next(iter(series.values()))]
    lines = ["| method | " + " | ".join(f"{100 * f:g}%" for f in fractions) + " |", "|---|" + "---:|" * len(fractions)]
    for method, points in series.items():
        values = [_mean_hr10(names) for _, names in points]
        ax.plot([100 * f for f in fractions], values, marker="o", label=method)
        lines.append(f"| {method} | " + " | ".join(f"{v:.4f}" for v in values) + " |")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("test HR@10")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return "\n".join(lines)


def _mean_hr10(names: list[str]) -> float:
    values = [json.loads((RUNS_DIR / n / "results.json").read_text())["test"]["hr@10"] for n in names]
    return sum(values) / len(values)
