"""What the `script/*.py` launchers share: turn constants + sweep lists into `torchrun run.py ...` runs.

A launcher holds only its constants and calls `sweep(__file__, ARGS, SWEEP, nproc)`. Every combination
of the SWEEP lists is one run (`subprocess.run([...])`); a failing run stops the sweep with the run's exit
status and one line naming it. Paths resolve from the launcher's own file, so it works from any current directory.

Command-line options of every launcher:
  --nproc_per_node N     processes on this node (default: the launcher's NPROC)
  --torchrun "ARGS"      replaces torchrun's default `--standalone`, e.g. multi-node:
                         "--nnodes 2 --node_rank 0 --master_addr 10.0.0.1 --master_port 29500"
  --dry_run              print the commands instead of running them
  --skip_done            skip runs whose run directory already holds results.json (continue a sweep)
  --seeds 1,2,3          repeat every run once per seed: `seed` joins the sweep grid (replacing any seed of
                         ARGS or SWEEP) and each run is named <name>-seed<N>, so `python -m adapter4rec.report`
                         pools the seeds of one configuration into one row (mean ± std)
  --run_name X           the stem of the run names instead of the launcher's (a sweep's runs: X-<grid values>,
                         with --seeds X-seed<N>), so runs of one sweep never share a directory
  anything else          passed to run.py after the launcher's own arguments, so it overrides them
                         (e.g. `python finetune.py --epochs 1 --precision fp32`)
"""
from __future__ import annotations

import itertools
import shlex
import subprocess
import sys
from pathlib import Path

from adapter4rec.config import REPO_ROOT


def _split_launcher_options(argv: list[str]) -> tuple[dict, list[str]]:
    opts = {"nproc": None, "torchrun": "--standalone", "dry_run": False, "skip_done": False, "seeds": None,
            "run_name": None}
    rest, i = [], 0
    while i < len(argv):
        arg = argv[i]
        name, eq, value = arg.partition("=")
        if name in ("--nproc_per_node", "--nproc-per-node", "--torchrun", "--seeds", "--run_name", "--run-name"):
            if not eq:
                i += 1
                if i >= len(argv):
                    raise SystemExit(f"launcher: {name} needs a value")
                value = argv[i]
            opts[{"--torchrun": "torchrun", "--seeds": "seeds", "--run_name": "run_name",
                  "--run-name": "run_name"}.get(name, "nproc")] = value
        elif arg in ("--dry_run", "--dry-run", "--skip_done", "--skip-done"):
            opts[arg.lstrip("-").replace("-", "_")] = True
        else:
            rest.append(arg)
        i += 1
    if opts["seeds"] is not None:
        opts["seeds"] = _parse_seeds(opts["seeds"], rest)
    return opts, rest


def split_seeds(argv: list[str]) -> tuple[list[str], list[int] | None]:
    """(argv without `--seeds LIST` / `--seeds=LIST`, the seeds parsed and checked as every launcher does them,
    or None): for a study that passes --seeds to some of its runs only."""
    seeds = _split_launcher_options(argv)[0]["seeds"]
    rest, i = [], 0
    while i < len(argv):
        if argv[i] == "--seeds":
            i += 2
            continue
        if not argv[i].startswith("--seeds="):
            rest.append(argv[i])
        i += 1
    return rest, seeds


def _parse_seeds(text: str, rest: list[str]) -> list[int]:
    try:
        seeds = [int(s) for s in text.split(",") if s.strip()]
    except ValueError:
        seeds = []
    if not seeds or len(set(seeds)) != len(seeds):
        raise SystemExit(f"launcher: --seeds {text!r}: expected a comma list of distinct integers, e.g. 1,2,3")
    if any(a.split("=")[0] == "--seed" for a in rest):
        raise SystemExit("launcher: --seeds and --seed together would give every run the same seed; use one of them")
    return seeds


def _output_root(args: dict, extra: list[str]) -> Path:
    """The output_dir a run will use: the last --output_dir among the extra arguments, else the launcher's."""
    root = str(args.get("output_dir", "runs"))
    for arg in extra:
        if arg.startswith("--output_dir="):
            root = arg.split("=", 1)[1]
    path = Path(root).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def _fmt(value) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def run_names(stem: str, grid: dict[str, list]) -> list[tuple[str, dict]]:
    """(run name, grid values) for every combination; only keys that take several values enter the name."""
    keys = list(grid)
    varying = [k for k in keys if len(grid[k]) > 1]
    out = []
    for combo in itertools.product(*(grid[k] for k in keys)):
        values = dict(zip(keys, combo))
        suffix = "-".join(f"{k}{_fmt(values[k])}" for k in varying)
        out.append((f"{stem}-{suffix}" if suffix else stem, values))
    return out


def seeded_runs(stem: str, grid: dict[str, list], seeds: list[int] | None) -> list[tuple[str, dict]]:
    """`run_names`, each repeated once per seed (named <name>-seed<N>) when `seeds` is given."""
    if seeds is None:
        return run_names(stem, grid)
    grid = {k: v for k, v in grid.items() if k != "seed"}
    return [(f"{run_name}-seed{seed}", {**values, "seed": seed})
            for run_name, values in run_names(stem, grid) for seed in seeds]


def run_or_exit(cmd: list[str], what: str) -> None:
    """Run a command; if it fails, stop with its exit status and one line naming it (the command printed its own
    error; a Python traceback of the launcher would only bury it)."""
    status = subprocess.run(cmd).returncode
    if status:
        print(f"launcher: {what} failed (exit status {status}); later runs were not started", file=sys.stderr,
              flush=True)
        raise SystemExit(status)


def sweep(launcher_file: str, args: dict, grid: dict[str, list], nproc: int = 1, name: str | None = None,
          argv: list[str] | None = None, run_py: Path | None = None) -> list[str]:
    """Run `../run.py` (relative to the launcher, or `run_py`) once per grid combination (and per seed of
    `--seeds`). Returns the run names, which start with `name` (default: the launcher's file name)."""
    launcher = Path(launcher_file).resolve()
    run_py = run_py or launcher.parent.parent / "run.py"
    opts, extra = _split_launcher_options(sys.argv[1:] if argv is None else argv)
    procs = str(opts["nproc"] or nproc)
    names = []
    for run_name, values in seeded_runs(opts["run_name"] or name or launcher.stem, grid, opts["seeds"]):
        merged = {**args, **values, "run_name": run_name}
        cmd = [sys.executable, "-m", "torch.distributed.run", *shlex.split(opts["torchrun"]),
               "--nproc_per_node", procs, str(run_py)]
        cmd += [f"--{k}={_fmt(v)}" for k, v in merged.items()] + extra
        done = (_output_root(merged, extra) / run_name / "results.json").is_file()
        if opts["skip_done"] and done:
            print(f"= {run_name}: results.json exists, skipped (--skip_done)", flush=True)
            names.append(run_name)
            continue
        if done:  # resume=auto starts a finished run afresh: say so before its checkpoints are replaced
            print(f"! {run_name}: finished before (results.json); it trains again from the start and its "
                  f"checkpoints are replaced (--skip_done keeps it)", flush=True)
        print("+ " + shlex.join(cmd), flush=True)
        if not opts["dry_run"]:
            run_or_exit(cmd, f"run {run_name}")
        names.append(run_name)
    return names
