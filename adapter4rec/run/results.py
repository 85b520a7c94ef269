"""The end of a run: its best checkpoint tested once, and results.json.

What is reported, on the test users: the metrics under the run's protocol and without history masking (the
protocol of published numbers), the popularity baseline on the same users, and the cold-start slice: the test
users whose target never occurs in the training windows, so an item the model never trained on (an ID model
can only guess it; a content model embeds it from its text or image; see models/fusion.py for the fused one).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from adapter4rec import dist
from adapter4rec.atomic import write_text_atomic
from adapter4rec.checkpoint import load_run_weights, prune_epoch_checkpoints, read_checkpoint
from adapter4rec.config import Config
from adapter4rec.evaluate import by_domain, evaluate_embeddings, item_table_of, popularity_vectors, validate

log = logging.getLogger("adapter4rec")


def finish(model, data, cfg: Config, device, run_dir: Path, progress, train_seconds: float) -> dict:
    """Test the best checkpoint (and the popularity baseline on the same users); write results.json."""
    best, best_epoch = progress.best, progress.best_epoch
    load_run_weights(model, read_checkpoint(run_dir / "best.pt"))
    table = item_table_of(model, cfg, device)  # every test split below ranks against it
    test = validate(model, data.split.test, cfg, device, "test", table)
    unmasked = None if data.split.test_no_mask is None else \
        validate(model, data.split.test_no_mask, cfg, device, "test, no masking", table)
    popularity = popularity_on(data, data.split.test, cfg, device)
    results = {"run_dir": str(run_dir), "best_epoch": best_epoch, f"valid_{cfg.select_metric}": best,
               "test": test, "popularity_test": popularity, "test_no_mask": unmasked,
               **cold_start_slice(model, data, cfg, device, table),
               "train_seconds": round(train_seconds, 1),
               # zero-shot trains nothing, whatever the settings mark trainable
               "trainable_params": 0 if cfg.zero_shot else sum(p.numel() for p in model.parameters()
                                                                if p.requires_grad),
               "total_params": sum(p.numel() for p in model.parameters()), "data": data.stats,
               "nonfinite_skipped": progress.skipped_total, "protocol": protocol(cfg)}
    if dist.is_main():
        write_text_atomic(run_dir / "results.json", json.dumps(results, indent=1))
        if not cfg.keep_run_state:
            drop_run_state(run_dir)
    log.info("test (best epoch %d): %s | popularity: %s", best_epoch,
             " ".join(f"{k}={v:.4f}" for k, v in test.items() if "@" in k),
             " ".join(f"{k}={v:.4f}" for k, v in popularity.items() if "@" in k))
    return results


def drop_run_state(run_dir: Path) -> None:
    """Once results.json is written: last.pt (the resume state, the size of the model and its optimizer) and the
    epoch-N.pt copies are of no further use; what a finished run is used by is best.pt and results.json."""
    removed = ["last.pt"] if (run_dir / "last.pt").is_file() else []
    (run_dir / "last.pt").unlink(missing_ok=True)
    removed += [p.name for p in prune_epoch_checkpoints(run_dir, newest=-1, keep=0)]
    if removed:
        log.info("finished: removed %s (keep_run_state=true keeps them)", ", ".join(removed))


def popularity_on(data, split, cfg: Config, device) -> dict:
    users, counts = popularity_vectors(data.split.item_counts)
    return by_domain(split, lambda part: evaluate_embeddings(users, counts, part, cfg.topk_list(),
                                                             cfg.eval_batch_size, device, cfg.eval_item_chunk))


def cold_start_slice(model, data, cfg: Config, device, table: torch.Tensor | None = None) -> dict:
    """{test_cold, test_cold_no_mask, popularity_test_cold}: the test users whose target never occurs in the
    training windows (window_counts 0), under both protocols, and popularity there; {} when there are none."""
    cold = data.split.window_counts == 0
    out = {}
    for key, split in (("test_cold", data.split.test), ("test_cold_no_mask", data.split.test_no_mask)):
        rows = None if split is None else torch.nonzero(cold[split.target]).squeeze(1)
        if rows is None or not len(rows):
            continue
        out[key] = validate(model, split.subset(rows), cfg, device, "test, cold items", table)
        if key == "test_cold":
            out["popularity_test_cold"] = popularity_on(data, split.subset(rows), cfg, device)
    if "test_cold" in out:
        log.info("cold-start slice (%d test users whose target never occurs in training): %s", out["test_cold"]["users"],
                 " ".join(f"{k}={v:.4f}" for k, v in out["test_cold"].items() if k in ("hr@10", "ndcg@10")))
    return out


def protocol(cfg: Config) -> str:
    masking = "whole history masked, users whose target repeats a history item skipped" \
        if cfg.eval_repeats == "skip" else "no history masking"
    ranked = "every item of the items file" if cfg.eval_candidates == "all" else \
        "the items occurring in the kept users' sequences"
    return (f"leave-one-out (valid = 2nd-to-last, test = last item), history of {cfg.max_seq_len} items, "
            f"full ranking over {ranked}, {masking}, ties by expectation, K={cfg.topk}")
