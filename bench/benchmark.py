"""Training and evaluation benchmark (not a test): `make bench`, or `python bench/benchmark.py [--steps N]`.

Every training configuration runs in its own process (so peak memory is its own), on the default target
data with the paper's text configuration (L=20, batch 32, d=64, SASRec, MiniLM item encoder, bce loss unless
stated), side by side in one invocation: the per-slot fp32 reference path (the original's work pattern,
bench/reference.py) vs the optimised path; full fine-tuning vs Houlsby vs the side network vs frozen; fp32 vs
bf16; 1 vs 2 processes; the one-off cost (seconds, MB) of each configuration's frozen-backbone cache.
Evaluation: batched full ranking vs a per-user argsort loop, and a synthetic 1,000,000 items x
10,000 users point. Writes bench/results/benchmark.json and .md (git-ignored) and prints the table.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BASE = ["--dataset=Dataset/default/target", "--item_encoder=all-MiniLM-L6-v2", "--batch_size=32",
        "--max_seq_len=20", "--embedding_dim=64", "--arch=sasrec", "--loss=bce", "--progress=false",
        "--stage=downstream"]
CONFIGS = {  # name -> (extra run arguments, per-slot reference path?, processes)
    "reference per-slot fp32, full FT": (["--precision=fp32"], True, 1),
    "optimised fp32, full FT": (["--precision=fp32"], False, 1),
    "optimised bf16, full FT": (["--precision=bf16"], False, 1),
    "optimised bf16, full FT, non-deterministic kernels": (["--precision=bf16", "--deterministic=false"], False, 1),
    "optimised bf16, full FT, 2 processes": (["--precision=bf16"], False, 2),
    "optimised bf16, Houlsby": (["--precision=bf16", "--tune=peft", "--adapter=houlsby"], False, 1),
    "optimised bf16, Houlsby in the top 2 of 6 item layers, no prefix cache":
        (["--precision=bf16", "--tune=peft", "--adapter=houlsby", "--adapter_layers=2",
          "--cache_frozen_backbone=false"], False, 1),
    "optimised bf16, Houlsby in the top 2 of 6 item layers, frozen-prefix cache":
        (["--precision=bf16", "--tune=peft", "--adapter=houlsby", "--adapter_layers=2"], False, 1),
    "optimised bf16, side network (cached layer states) + user Houlsby":
        (["--precision=bf16", "--tune=peft", "--adapter=side"], False, 1),
    "optimised bf16, frozen + head (cached backbone)": (["--precision=bf16", "--tune=peft", "--train_head=true"],
                                                        False, 1),
    "optimised bf16, full FT, in-batch loss": (["--precision=bf16", "--loss=inbatch"], False, 1),
}


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def run_one(name: str, steps: int, warmup: int) -> dict:
    """Time `steps` training steps of one configuration in this process (rank 0 reports)."""
    import torch

    from adapter4rec import dist
    from adapter4rec.adapters.methods import add_adapters
    from adapter4rec.adapters.trainable import set_trainable
    from adapter4rec.config import parse_args
    from adapter4rec.evaluate import autocast
    from adapter4rec.models.negatives import sample_negatives
    from adapter4rec.run.record import seed_everything
    from adapter4rec.training.build import build_model, load_data
    from adapter4rec.training.optim import build_optimizer
    from bench.reference import PerSlotRecommender

    extra, per_slot, _ = CONFIGS[name]
    cfg = parse_args(BASE + extra)
    device = dist.setup("cpu")
    seed_everything(0, cfg.deterministic)  # as a real run: deterministic kernels unless switched off
    data = load_data(cfg)
    model = build_model(cfg, data)
    add_adapters(model, cfg)
    set_trainable(model, cfg)
    if per_slot:
        model = PerSlotRecommender(model, cfg.max_title_tokens)
    started = time.perf_counter()
    cached = model.item_encoder.cache_backbone() if cfg.cache_frozen_backbone else ""
    cache_build_s = time.perf_counter() - started if cached else 0.0
    cache_mb = getattr(model.item_encoder, "cache_report", {}).get("bytes", 0) / 2**20 if cached else 0.0
    ddp = dist.wrap_ddp(model, device)
    optimizer = build_optimizer(model, cfg)
    timers = {"data": 0.0, "item encoder": 0.0, "user encoder + loss": 0.0, "backward": 0.0, "optimizer": 0.0}
    item_time = [0.0]
    inner = model.encode_distinct

    def timed_encode(ids):
        t = time.perf_counter()
        out = inner(ids)
        item_time[0] += time.perf_counter() - t
        return out
    model.encode_distinct = timed_encode
    generator = torch.Generator().manual_seed(dist.rank())
    order = torch.randperm(len(data.split.train), generator=generator)
    tokens, step_times = 0, []
    model.train()
    for step in range(warmup + steps):
        t0 = time.perf_counter()
        rows = order[(step * cfg.batch_size) % len(order):][:cfg.batch_size]
        seqs = data.split.train[rows]
        negatives = sample_negatives(seqs, model.num_items, generator) if cfg.loss == "bce" else None
        t1 = time.perf_counter()
        item_time[0] = 0.0
        with autocast(cfg, device):
            loss = ddp(seqs, negatives)
        t2 = time.perf_counter()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        t3 = time.perf_counter()
        optimizer.step()
        t4 = time.perf_counter()
        if step >= warmup:
            ids = torch.cat([seqs, negatives], 1) if negatives is not None else seqs
            real = ids.reshape(-1) if per_slot else torch.unique(ids[ids > 0])
            tokens += int(model.item_encoder.token_lengths[real].sum()) if not per_slot else \
                len(real) * cfg.max_title_tokens
            for key, value in zip(timers, (t1 - t0, item_time[0], t2 - t1 - item_time[0], t3 - t2, t4 - t3)):
                timers[key] += value
            step_times.append(t4 - t0)
    backbone = getattr(model.item_encoder, "backbone", None)
    non_embedding = sum(p.numel() for n, p in backbone.named_parameters() if "embeddings" not in n) if backbone else 0
    step_times.sort()
    median = step_times[len(step_times) // 2]
    world = dist.world_size()
    result = {"config": name, "processes": world, "median_step_s": median,
              "sequences_per_s": world * cfg.batch_size / median, "peak_rss_mb": peak_rss_mb(),
              "breakdown_s": {k: v / steps for k, v in timers.items()}, "cached_backbone": cached,
              "cache_build_s": cache_build_s, "cache_mb": cache_mb,
              "item_encoder_tokens_per_step": tokens / steps, "torch_threads": torch.get_num_threads(),
              "item_encoder_forward_gflop_per_step": 2 * non_embedding * tokens / steps / 1e9,
              "precision": cfg.precision}
    dist.cleanup()
    return result


def matmul_gflops(dtype_name: str) -> float:
    import torch
    dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype_name]
    a, b = torch.randn(2048, 2048, dtype=dtype), torch.randn(2048, 2048, dtype=dtype)
    for _ in range(2):
        a @ b
    t = time.perf_counter()
    for _ in range(5):
        a @ b
    return 5 * 2 * 2048 ** 3 / (time.perf_counter() - t) / 1e9


def evaluation_points() -> dict:
    """Batched vs per-user-loop ranking on the Amazon-Scientific size, and a 1M x 10k scale point."""
    import numpy as np
    import torch

    from adapter4rec.data.files import Interactions
    from adapter4rec.data.split import leave_one_out
    from adapter4rec.evaluate import evaluate_embeddings

    rng = np.random.default_rng(0)
    n_users, n_items, d = 8442, 4385, 64
    seqs = [rng.choice(np.arange(1, n_items + 1), size=int(rng.integers(5, 12)), replace=False) for _ in range(n_users)]
    split = leave_one_out(Interactions([str(i) for i in range(n_users)], seqs, n_items, {}), 20).test
    table, users = torch.randn(n_items + 1, d), torch.randn(n_users, d)
    user_fn = lambda h: users[:len(h)]  # noqa: E731 - any user vectors: the ranking cost does not depend on them
    t = time.perf_counter()
    evaluate_embeddings(user_fn, table, split, [10], 512, torch.device("cpu"))
    batched = time.perf_counter() - t
    t = time.perf_counter()
    scores = users @ table.T
    for u in range(n_users):  # the original: one argsort per user in Python
        row = scores[u].clone()
        row[split.seen_items[split.seen_ptr[u]:split.seen_ptr[u + 1]]] = -float("inf")
        row[0] = -float("inf")
        rank = int((torch.argsort(row, descending=True) == split.target[u]).nonzero())
        _ = rank < 10
    loop = time.perf_counter() - t
    return {"users": n_users, "items": n_items, "batched_s": batched, "per_user_loop_s": loop}


def scale_point() -> dict:
    """10,000 users x 1,000,000 items, d = 64, two cases: random vectors (a target is usually far from the top K,
    so its user stops being counted early: adapter4rec/ranking/early_exit.py) and every user's vector a multiple
    of its target's (the target is first for nearly every user, the worst case: every user is counted over
    every item, the cost of one full pass)."""
    import torch

    from adapter4rec.data.split import EvalSplit
    from adapter4rec.evaluate import evaluate_embeddings
    n_users, n_items, d = 10_000, 1_000_000, 64
    g = torch.Generator().manual_seed(0)
    hist = torch.randint(1, n_items + 1, (n_users, 20), generator=g)
    following = hist[:, -1] % n_items + 1  # the "on top" case's target: a function of the history
    table, users = torch.randn(n_items + 1, d, generator=g), torch.randn(n_users, d, generator=g)
    cases = {"random": (torch.randint(1, n_items + 1, (n_users,), generator=g), lambda h: users[:len(h)]),
             "targets_on_top": (following, lambda h: 3.0 * table[h[:, -1] % n_items + 1])}
    rss_before = peak_rss_mb()
    out = {"users": n_users, "items": n_items, "peak_rss_before_mb": rss_before,
           "torch_threads": torch.get_num_threads()}  # the counting runs one worker per thread
    for name, (target, user_fn) in cases.items():
        split = EvalSplit(torch.arange(n_users), hist, target, torch.arange(0, n_users * 20 + 1, 20),
                          hist.reshape(-1), 0)
        t = time.perf_counter()
        res = evaluate_embeddings(user_fn, table, split, [10, 20], 256, torch.device("cpu"), 65536)
        out["seconds" if name == "random" else f"seconds_{name}"] = time.perf_counter() - t
        out[f"hr@20_{name}"] = res["hr@20"]
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--configs", default="", help="'|'-separated training configuration names (names hold "
                        "commas): run only these, e.g. 'optimised bf16, full FT|optimised bf16, Houlsby'; default all")
    parser.add_argument("--training_only", action="store_true", help="skip the evaluation and scale points")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--part", choices=["eval", "scale", "matmul"], help=argparse.SUPPRESS)
    opts = parser.parse_args()
    if opts.one:
        result = run_one(opts.one, opts.steps, opts.warmup)
        if int(os.environ.get("RANK", "0")) == 0:
            print("RESULT " + json.dumps(result), flush=True)
        return
    if opts.part:
        part = {"eval": evaluation_points, "scale": scale_point,
                "matmul": lambda: {p: matmul_gflops(p) for p in ("fp32", "bf16")}}[opts.part]()
        print("RESULT " + json.dumps(part), flush=True)
        return
    report = {"machine": f"{os.cpu_count()} CPU cores", "training": [], "argv": sys.argv[1:]}
    wanted = [w.strip() for w in opts.configs.split("|") if w.strip()]
    unknown = sorted(set(wanted) - set(CONFIGS))
    if unknown:
        raise SystemExit(f"benchmark.py: unknown configuration(s) {unknown}; known: {' | '.join(CONFIGS)}")
    for name, (_, _, procs) in CONFIGS.items():
        if wanted and name not in wanted:
            continue
        head = [sys.executable] if procs == 1 else [sys.executable, "-m", "torch.distributed.run", "--standalone",
                                                    "--nproc_per_node", str(procs)]
        env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS=str(max(1, (os.cpu_count() or 2) // procs)))
        report["training"].append(_child(head + [str(Path(__file__)), "--one", name, "--steps", str(opts.steps),
                                                 "--warmup", str(opts.warmup)], env))
    for part in ("matmul",) if opts.training_only else ("matmul", "eval", "scale"):
        report[part] = _child([sys.executable, str(Path(__file__)), "--part", part], dict(os.environ))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "benchmark.json").write_text(json.dumps(report, indent=1))
    from bench.tables import markdown
    text = markdown(report)
    (RESULTS / "benchmark.md").write_text(text + "\n")
    print(text)


def _child(cmd: list[str], env: dict) -> dict:
    out = subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=ROOT, env=env).stdout
    return json.loads(next(line for line in out.splitlines() if line.startswith("RESULT "))[7:])


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))  # `bench` is a folder of scripts, not part of the installed package
    main()
