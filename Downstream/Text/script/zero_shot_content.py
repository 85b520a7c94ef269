"""The zero-shot floor of text transfer: rank a target's items by their text alone, with no training anywhere.

Every item's text goes once through a pretrained text encoder (mean-pooled last layer, L2-normalised, as sentence
encoders are used); a user is the recency-weighted mean of its history's item vectors (weight decay**age, age 0 =
the last item; decay 0 = the last item alone) and items are ranked by cosine to it. No parameter is trained: it
is what the encoder's text similarity knows of the target, the floor a pretrained source model's zero-shot
ranking (study_amazon.py / study_pool.py `*-zero-shot*` rows) has to beat. The decay is chosen on validation
NDCG@10 (masked), then test is reported once, history masked and not, beside popularity.

    .venv/bin/python Downstream/Text/script/zero_shot_content.py [--dataset DIR] [--item_encoder NAME] [--out F]

Defaults: Amazon Scientific as study_amazon.py converts it, all-MiniLM-L6-v2, 64 title tokens, history of 20
items (the studies' settings); results as JSON in runs/zero-shot-content-<encoder>.json.
"""
import argparse
import json
import time

import torch
import torch.nn.functional as F
from study_amazon import COMMON, SCIENTIFIC, convert

from adapter4rec.config import REPO_ROOT, Config
from adapter4rec.evaluate import evaluate_embeddings, popularity_vectors
from adapter4rec.models.frozen_path import pool_states
from adapter4rec.models.pretrained import checkpoint_dir, load_text_backbone, load_tokenizer
from adapter4rec.training.build import load_data

DECAYS = (0.0, 0.3, 0.5, 0.7, 0.9, 1.0)


@torch.no_grad()
def item_vectors(cfg: Config, titles: list[str], batch: int = 128) -> torch.Tensor:
    """(N+1, hidden) L2-normalised mean-pooled last-layer states of every item's text; row 0 (padding) zeros."""
    folder = checkpoint_dir(cfg)
    tokenizer, model = load_tokenizer(folder), load_text_backbone(folder).eval()
    rows = [torch.zeros(1, model.config.hidden_size)]
    for start in range(0, len(titles), batch):
        enc = tokenizer(titles[start:start + batch], padding=True, truncation=True, max_length=cfg.max_title_tokens,
                        return_tensors="pt")
        hidden = model(**enc).last_hidden_state  # (b, T, hidden)
        rows.append(F.normalize(pool_states(hidden, enc["attention_mask"], "mean"), dim=-1))
    return torch.cat(rows)


def recency_users(table: torch.Tensor, decay: float):
    """history (b, L) left-padded item ids -> (b, hidden) weighted mean of the history's vectors."""
    def users(history: torch.Tensor) -> torch.Tensor:
        length = history.shape[1]
        # left padded: the last column is the newest item (age 0), a real item in every history
        age = torch.arange(length - 1, -1, -1, dtype=torch.float32)
        weight = (decay ** age if decay > 0 else (age == 0).float()).expand_as(history) * (history > 0)
        return (table[history] * weight.unsqueeze(-1)).sum(1)
    return users


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                     allow_abbrev=False)
    parser.add_argument("--dataset", default=str(SCIENTIFIC))
    parser.add_argument("--item_encoder", default=COMMON["item_encoder"])
    parser.add_argument("--max_title_tokens", type=int, default=64)
    parser.add_argument("--out", default=None)
    opts = parser.parse_args()
    if opts.dataset == str(SCIENTIFIC):
        convert()
    cfg = Config(dataset=opts.dataset, item_encoder=opts.item_encoder, max_seq_len=COMMON["max_seq_len"],
                 max_title_tokens=opts.max_title_tokens, stage="downstream").validate()
    data = load_data(cfg)
    start = time.time()
    table = item_vectors(cfg, data.catalog.titles)
    encode_s = time.time() - start
    device, ks = torch.device("cpu"), cfg.topk_list()

    def rank(users, split, vectors=table):
        return evaluate_embeddings(users, vectors, split, ks, cfg.eval_batch_size, device, cfg.eval_item_chunk)

    valid = {decay: rank(recency_users(table, decay), data.split.valid)["ndcg@10"] for decay in DECAYS}
    best = max(valid, key=valid.get)
    users = recency_users(table, best)
    pop_users, counts = popularity_vectors(data.split.item_counts)
    result = {"dataset": opts.dataset, "item_encoder": opts.item_encoder, "valid_ndcg@10_by_decay": valid,
              "decay": best, "test": rank(users, data.split.test), "test_no_mask": rank(users, data.split.test_no_mask),
              "popularity_test": rank(pop_users, data.split.test, counts),
              "popularity_test_no_mask": rank(pop_users, data.split.test_no_mask, counts),
              "encode_seconds": round(encode_s, 1), "items": len(data.catalog)}
    out = opts.out or REPO_ROOT / "runs" / f"zero-shot-content-{opts.item_encoder}.json"
    with open(out, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"valid NDCG@10 by decay: {valid}; chosen {best}")
    for key in ("test", "test_no_mask", "popularity_test", "popularity_test_no_mask"):
        print(f"{key}: HR@10 {result[key]['hr@10']:.4f} NDCG@10 {result[key]['ndcg@10']:.4f}")
    print(f"item text encoded in {encode_s:.1f} s; written {out}")


if __name__ == "__main__":
    main()
