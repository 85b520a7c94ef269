"""Markdown tables of a benchmark report (bench/benchmark.py)."""
from __future__ import annotations


def markdown(report: dict) -> str:
    rows = report["training"]
    ref = rows[0]
    peak = report["matmul"]
    lines = [f"Machine: {report['machine']}. Training: default target data, L=20, batch 32 per process, d=64, "
             "SASRec, MiniLM item encoder; median step over the measured steps; peak RSS of the process (rank 0); "
             f"speed-up relative to the first row ({ref['config']}).",
             "", "| configuration | processes | s/step | sequences/s | speed-up | peak RSS MB | "
             "item-enc tokens/step | item-enc fwd GFLOP/s (% of matmul peak) | cache: one-off s, MB |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        fwd = r["breakdown_s"]["item encoder"]
        gflops = r["item_encoder_forward_gflop_per_step"] / fwd if fwd > 0 and not r["cached_backbone"] else 0.0
        share = f"{gflops:.1f} ({100 * gflops / peak[r['precision']]:.0f}%)" if gflops else "- (cached)"
        lines.append(f"| {r['config']} | {r['processes']} | {r['median_step_s']:.2f} | {r['sequences_per_s']:.1f} | "
                     f"{r['sequences_per_s'] / ref['sequences_per_s']:.1f}x | {r['peak_rss_mb']:.0f} | "
                     f"{r['item_encoder_tokens_per_step']:.0f} | {share} | {_cache(r)} |")
    lines += ["", "Step-time breakdown (seconds per step; the item encoder's backward is inside 'backward'):", "",
              "| configuration | data | item encoder fwd | user encoder + loss fwd | backward | optimizer |",
              "|---|---:|---:|---:|---:|---:|"]
    for r in rows:
        b = r["breakdown_s"]
        lines.append(f"| {r['config']} | {b['data']:.3f} | {b['item encoder']:.3f} | {b['user encoder + loss']:.3f} | "
                     f"{b['backward']:.3f} | {b['optimizer']:.3f} |")
    lines += ["", f"Dense matmul peak measured here: fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s."]
    if "eval" not in report:  # --training_only
        return "\n".join(lines)
    ev, sc = report["eval"], report["scale"]
    scale = (f"Scale point, {sc['users']:,} users x {sc['items']:,} items, d=64: {sc['seconds']:.1f} s, "
             f"peak RSS {sc['peak_rss_mb']:.0f} MB (of which {sc['peak_rss_before_mb']:.0f} MB before ranking)")
    if "seconds_targets_on_top" in sc:  # older reports have only the random case
        scale += (f" with random vectors (HR@20 {sc['hr@20_random']:.4f}); with every target on top (HR@20 "
                  f"{sc['hr@20_targets_on_top']:.4f}, no user stops early) {sc['seconds_targets_on_top']:.1f} s")
    lines += ["", f"Evaluation ranking, {ev['users']:,} users x {ev['items']:,} items: batched {ev['batched_s']:.2f} s "
              f"vs per-user argsort loop {ev['per_user_loop_s']:.2f} s ({ev['per_user_loop_s'] / ev['batched_s']:.0f}x).",
              scale + "."]
    return "\n".join(lines)


def _cache(row: dict) -> str:
    """The one-off cost of the row's frozen-backbone cache (older reports have no such fields)."""
    if not row.get("cached_backbone"):
        return "-"
    return f"{row.get('cache_build_s', 0.0):.1f} s, {row.get('cache_mb', 0.0):.1f} MB"
