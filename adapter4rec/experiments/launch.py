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
                         ARGS or SWEEP) and each run is named <name>-seed<N>, so `python -m adapter4rec report`
                         pools the seeds of one configuration into one row (mean ± std); a value holding
                         SEED_SUFFIX reads each seed's own run: warm_start="runs/x{seed_suffix}/best.pt" is
                         runs/x/best.pt without --seeds and runs/x-seed<N>/best.pt for seed N
  --run_name X           the stem of the run names instead of the launcher's (a sweep's runs: X-<grid values>,
                         with --seeds X-seed<N>), so runs of one sweep never share a directory
  anything else          passed to run.py after the launcher's own arguments, so it overrides them
                         (e.g. `python finetune.py --epochs 1 --precision fp32`)

A study that calls sweep() for many runs may hand it a `JobQueue` (`--jobs N` of study_amazon.py): the runs
then go N at a time, each with its share of the CPU threads, every run after the runs it reads from.
"""
from __future__ import annotations

import itertools
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass, field
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
            _refuse_mistyped_option(name)
            rest.append(arg)
        i += 1
    if opts["seeds"] is not None:
        opts["seeds"] = _parse_seeds(opts["seeds"], rest)
    return opts, rest


LAUNCHER_OPTIONS = ("--nproc_per_node", "--torchrun", "--dry_run", "--skip_done", "--seeds", "--run_name", "--jobs")


def _refuse_mistyped_option(flag: str) -> None:
    """`--dryrun`: not a Config key but close to a launcher option: refused here with the suggestion (run.py would
    only say it is no setting). Anything else goes on to run.py, which suggests among the settings."""
    import dataclasses

    from adapter4rec.config import Config
    from adapter4rec.config.flags import suggest_name

    typed = flag.replace("-", "_").lstrip("_")
    keys = {f.name for f in dataclasses.fields(Config)}
    if not flag.startswith("--") or typed in keys or (typed.startswith("no_") and typed[3:] in keys):
        return
    hint = suggest_name("--" + typed, LAUNCHER_OPTIONS)
    if hint:
        print(f"launcher: unknown option {flag}{hint}; the launcher's options: {', '.join(LAUNCHER_OPTIONS)} "
              f"(docs/running.md), any other --key=value goes to run.py", file=sys.stderr)
        raise SystemExit(2)  # a usage error, as run.py's


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


SEED_SUFFIX = "{seed_suffix}"  # in a run's value: "" for the run itself, "-seed<N>" for its seed-N repeat


def seeded_runs(stem: str, grid: dict[str, list], seeds: list[int] | None) -> list[tuple[str, dict]]:
    """`run_names`, each repeated once per seed (named <name>-seed<N>) when `seeds` is given."""
    if seeds is None:
        return run_names(stem, grid)
    grid = {k: v for k, v in grid.items() if k != "seed"}
    return [(f"{run_name}-seed{seed}", {**values, "seed": seed})
            for run_name, values in run_names(stem, grid) for seed in seeds]


def run_or_exit(cmd: list[str], what: str) -> None:
    """Run a command; if it fails, stop with its exit status and one line naming it (the command printed its own
    error; a Python traceback of the launcher would only bury it). Ctrl-C reaches the command too (one process
    group): it stops itself (a run writes last.pt and says how to continue) and the launcher waits for it, then
    exits with its status (130, or 143 for SIGTERM) and one line, without a traceback."""
    process = subprocess.Popen(cmd)
    interrupted = False
    while True:
        try:
            status = process.wait()
            break
        except KeyboardInterrupt:  # the command got the same SIGINT: let it finish stopping
            interrupted = True
    if interrupted or status in (130, 143, -2, -15):
        status = status if status > 0 else 128 - status
        print(f"launcher: {what} was interrupted (exit status {status}); later runs were not started; the same "
              f"command continues where it stopped", file=sys.stderr, flush=True)
        raise SystemExit(status or 130)
    if status:
        print(f"launcher: {what} failed (exit status {status}); later runs were not started", file=sys.stderr,
              flush=True)
        raise SystemExit(status)


@dataclass
class Job:
    name: str
    cmd: list[str]
    log: Path
    after: list["Job"]                      # the runs whose directories its arguments name
    reads: list[str] = field(default_factory=list)  # its argument values (what `after` is found from)
    process: subprocess.Popen | None = None
    status: int | None = None               # exit status once finished
    started: float = 0.0


class JobQueue:
    """Runs submitted commands `jobs` at a time. Small models do not keep two CPU cores busy (their ops are too
    small to split well), so two runs with one thread each finish sooner than the same runs one after the other
    with two threads: two of study_amazon_settings.py's ID-SASRec runs took 455 s with --jobs=2 against 630 s
    one after the other on 2 cores (docs/real_data.md). A run's numbers depend on its thread count (the order
    of float sums), so a 1-thread run differs from a 2-thread one by about what another seed would give.

    A run starts when a slot is free and every queued run whose directory one of its arguments names (a
    source_checkpoint or warm_start `runs/<name>/best.pt`) has finished, whatever order they were submitted in
    (a cycle is refused before anything starts); runs start in submission order otherwise. Each run gets cpu_count // jobs threads (OMP_NUM_THREADS) and writes its output to `log_dir/<name>.log`
    (the terminal gets one line per start and end). After a failure no new run starts; the running ones finish,
    then wait() exits with the failed run's status, naming it."""

    def __init__(self, jobs: int, log_dir: Path, threads: int | None = None, poll_seconds: float = 0.5):
        if jobs < 1:
            raise SystemExit(f"launcher: --jobs {jobs}: expected a positive number of runs at a time")
        self.jobs, self.log_dir, self.poll = jobs, Path(log_dir), poll_seconds
        self.threads = threads or max(1, (os.cpu_count() or 1) // jobs)
        self.queued: list[Job] = []

    def submit(self, name: str, cmd: list[str], reads: list[str]) -> None:
        """`reads`: the run's argument values; one that names `<queued run>/` in a path makes it wait for that run
        (resolved in wait(), so a run may be submitted before the run it reads)."""
        self.queued.append(Job(name, cmd, self.log_dir / f"{name}.log", [], reads=list(reads)))

    def _link(self) -> None:
        """Each job's `after`: the other queued runs its arguments name; a cycle stops with one line."""
        for job in self.queued:
            job.after = [other for other in self.queued if other is not job
                         and any(f"/{other.name}/" in f"/{value}" for value in job.reads)]
        state: dict[str, int] = {}  # 1 = on the current path, 2 = done

        def visit(job: Job, path: list[str]) -> None:
            if state.get(job.name) == 2:
                return
            if state.get(job.name) == 1:
                raise SystemExit(f"launcher: the runs {' -> '.join(path + [job.name])} read each other in a cycle; "
                                 f"none of them can start")
            state[job.name] = 1
            for dep in job.after:
                visit(dep, path + [job.name])
            state[job.name] = 2
        for job in self.queued:
            visit(job, [])

    def _start(self, job: Job) -> None:
        job.log.parent.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ, OMP_NUM_THREADS=str(self.threads), MKL_NUM_THREADS=str(self.threads))
        with open(job.log, "w") as log:
            job.process = subprocess.Popen(job.cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        job.started = time.time()
        print(f"> {job.name}: started ({self.threads} thread(s), output in {job.log})", flush=True)

    def wait(self) -> None:
        """Run everything submitted; return when all finished, or exit with the first failure's status. Ctrl-C
        reaches the running jobs too: they stop themselves (last.pt); the queue waits for them, starts no other,
        and exits 130 with one line."""
        self._link()
        pending, running = list(self.queued), []
        try:
            self._run(pending, running)
        except KeyboardInterrupt:
            for job in running:
                while job.process.poll() is None:
                    try:
                        job.process.wait()
                    except KeyboardInterrupt:
                        pass
            names = ", ".join(job.name for job in running) or "none"
            print(f"launcher: interrupted; running run(s) stopped ({names}), {len(pending)} not started; the same "
                  f"command continues where they stopped", file=sys.stderr, flush=True)
            raise SystemExit(130) from None

    def _run(self, pending: list[Job], running: list[Job]) -> None:
        failed = None
        while pending or running:
            for job in list(pending):
                if failed is not None or len(running) >= self.jobs:
                    break
                if all(dep.status == 0 for dep in job.after):
                    pending.remove(job)
                    self._start(job)
                    running.append(job)
            if not running and failed is None:  # cannot happen: _link refused cycles
                raise RuntimeError(f"launcher: no run can start: {[job.name for job in pending]}")
            for job in list(running):
                if job.process.poll() is None:
                    continue
                running.remove(job)
                job.status = job.process.returncode
                print(f"< {job.name}: {'finished' if job.status == 0 else f'FAILED (exit status {job.status})'} "
                      f"after {time.time() - job.started:.0f} s", flush=True)
                if job.status and failed is None:
                    failed = job
            if failed is not None and not running:
                break
            if running:
                time.sleep(self.poll)
        self.queued = []
        if failed is not None:
            print(f"launcher: run {failed.name} failed (exit status {failed.status}; its output: {failed.log}); "
                  f"{len(pending)} run(s) were not started", file=sys.stderr, flush=True)
            raise SystemExit(failed.status)


def split_jobs(argv: list[str]) -> tuple[list[str], int]:
    """(argv without `--jobs N` / `--jobs=N`, N (default 1))."""
    rest, jobs, i = [], 1, 0
    while i < len(argv):
        name, eq, value = argv[i].partition("=")
        if name == "--jobs":
            if not eq:
                i += 1
                value = argv[i] if i < len(argv) else ""
            try:
                jobs = int(value)
            except ValueError:
                raise SystemExit(f"launcher: --jobs {value!r}: expected a number of runs at a time") from None
        else:
            rest.append(argv[i])
        i += 1
    return rest, jobs


def sweep(launcher_file: str, args: dict, grid: dict[str, list], nproc: int = 1, name: str | None = None,
          argv: list[str] | None = None, run_py: Path | None = None, queue: JobQueue | None = None) -> list[str]:
    """Run `../run.py` (relative to the launcher, or `run_py`) once per grid combination (and per seed of
    `--seeds`); with a `queue`, hand each run to it instead (queue.wait() runs them). Returns the run names,
    which start with `name` (default: the launcher's file name)."""
    launcher = Path(launcher_file).resolve()
    run_py = run_py or launcher.parent.parent / "run.py"
    opts, extra = _split_launcher_options(sys.argv[1:] if argv is None else argv)
    procs = str(opts["nproc"] or nproc)
    names = []
    for run_name, values in seeded_runs(opts["run_name"] or name or launcher.stem, grid, opts["seeds"]):
        suffix = f"-seed{values['seed']}" if opts["seeds"] else ""
        merged = {k: v.replace(SEED_SUFFIX, suffix) if isinstance(v, str) else v
                  for k, v in {**args, **values, "run_name": run_name}.items()}
        cmd = [sys.executable, "-m", "adapter4rec.run.torchrun", *shlex.split(opts["torchrun"]),
               "--nproc_per_node", procs, str(run_py)]
        cmd += [f"--{k}={_fmt(v)}" for k, v in merged.items()] + extra
        done = (_output_root(merged, extra) / run_name / "results.json").is_file()
        if opts["skip_done"] and done:
            print(f"= {run_name}: results.json exists, skipped (--skip_done)", flush=True)
            names.append(run_name)
            continue
        if done:  # the run itself decides (run_folder.decide): done if its settings are the same, else refused
            print(f"! {run_name}: finished before (results.json): reported as done if its settings are unchanged, "
                  f"refused otherwise (--overwrite=true trains it again; --skip_done does not start it)", flush=True)
        print("+ " + shlex.join(cmd), flush=True)
        if queue is not None and not opts["dry_run"]:
            queue.submit(run_name, cmd, [str(v) for v in merged.values()] + extra)
        elif not opts["dry_run"]:
            run_or_exit(cmd, f"run {run_name}")
        names.append(run_name)
    return names
