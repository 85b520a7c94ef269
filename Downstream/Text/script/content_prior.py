"""A finished run's scores plus a training-free text prior: score = model score + weight * cosine(user, item),
the cosine of zero_shot_content.py (the frozen encoder's mean-pooled item vectors; a user is the recency-weighted
mean of its history's). Both are dot products, so the sum is one dot product of concatenated vectors,
[u, sqrt(w) c_u] . [e_i, sqrt(w) c_i], ranked by the same full-ranking evaluation as every run. The weight (and the
prior's recency decay) is chosen on validation NDCG@10 (masked) per run, then test is reported once, history
masked and not; weight 0 is the run itself (its results.json numbers).

    .venv/bin/python Downstream/Text/script/content_prior.py runs/enc-minilm-l6 [runs/...] [--item_encoder NAME]

Results as JSON beside each run: <run>/content_prior.json.
"""
import argparse
import dataclasses
import json
import math
from pathlib import Path

import torch
from zero_shot_content import DECAYS, item_vectors, recency_users

from adapter4rec.evaluate import autocast, evaluate_embeddings
from adapter4rec.serving import load_run

WEIGHTS = (0.0, *(2.0 ** p for p in range(-2, 9)))  # 0.25 .. 256


def combined(run, content: torch.Tensor, weight: float, decay: float):
    """(user fn, item table) of the run's ranking vectors with sqrt(weight) x the content prior's appended."""
    device = torch.device(run.device)
    with torch.no_grad(), autocast(run.config, device):
        table = run.item_table()
        ranking = run.model.ranking_table(table).float()
    prior_users, root = recency_users(content, decay), math.sqrt(weight)

    def users(history: torch.Tensor) -> torch.Tensor:
        with torch.no_grad(), autocast(run.config, device):
            u = run.model.user_vectors(history, table).float()
        return torch.cat([u, root * prior_users(history.cpu()).to(u.device)], dim=1)
    return users, torch.cat([ranking, root * content.to(ranking.device)], dim=1)


def rank(run, content, weight, decay, split) -> dict:
    users, table = combined(run, content, weight, decay)
    cfg = run.config
    return evaluate_embeddings(users, table, split, cfg.topk_list(), cfg.eval_batch_size, torch.device(run.device),
                               cfg.eval_item_chunk)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("runs", nargs="+", type=Path)
    parser.add_argument("--item_encoder", default=None, help="the prior's encoder (default: the run's own)")
    opts = parser.parse_args()
    contents: dict[tuple, torch.Tensor] = {}
    for run_dir in opts.runs:
        run = load_run(run_dir)
        cfg = run.config
        if opts.item_encoder:
            cfg = dataclasses.replace(cfg, item_encoder=opts.item_encoder)
        key = (cfg.dataset, cfg.item_encoder, cfg.max_title_tokens)
        if key not in contents:
            contents[key] = item_vectors(cfg, run.data.catalog.titles)
        content, split = contents[key], run.data.split
        valid = {(w, d): rank(run, content, w, d, split.valid)["ndcg@10"]
                 for d in DECAYS for w in (WEIGHTS if d == DECAYS[0] else WEIGHTS[1:])}
        weight, decay = max(valid, key=valid.get)
        result = {"item_encoder": cfg.item_encoder, "weight": weight, "decay": decay,
                  "valid_ndcg@10": valid[(weight, decay)], "valid_ndcg@10_run": valid[(0.0, DECAYS[0])],
                  "test": rank(run, content, weight, decay, split.test),
                  "test_no_mask": rank(run, content, weight, decay, split.test_no_mask)}
        (run_dir / "content_prior.json").write_text(json.dumps(result, indent=1), encoding="utf-8")
        print(f"{run_dir}: weight {weight} decay {decay}: valid NDCG@10 {result['valid_ndcg@10']:.4f} "
              f"(run {result['valid_ndcg@10_run']:.4f}); test HR@10 {result['test']['hr@10']:.4f} NDCG@10 "
              f"{result['test']['ndcg@10']:.4f}; unmasked {result['test_no_mask']['hr@10']:.4f} / "
              f"{result['test_no_mask']['ndcg@10']:.4f}")


if __name__ == "__main__":
    main()
