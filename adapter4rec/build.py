"""From a Config to data and a model: files -> catalog, interactions, split -> Recommender."""
from __future__ import annotations

import logging
from dataclasses import dataclass

from adapter4rec.config import Config
from adapter4rec.data.files import ItemCatalog, read_items, read_users
from adapter4rec.data.split import LeaveOneOut, leave_one_out
from adapter4rec.data.text import build_token_table
from adapter4rec.models.item_encoders import IdItemEncoder, TextItemEncoder
from adapter4rec.models.pretrained import checkpoint_dir, load_text_backbone, load_tokenizer
from adapter4rec.models.recommender import Recommender
from adapter4rec.models.user_encoder import SASRecEncoder

log = logging.getLogger(__name__)


@dataclass
class Data:
    catalog: ItemCatalog
    split: LeaveOneOut
    user_ids: list[str]
    stats: dict


def load_data(cfg: Config) -> Data:
    folder = cfg.resolve(cfg.dataset)
    catalog = read_items(folder / cfg.items_file)
    interactions = read_users(folder / cfg.users_file, catalog.index, cfg.min_seq_len, cfg.unknown_items)
    split = leave_one_out(interactions, cfg.max_seq_len, cfg.eval_repeats)
    stats = dict(interactions.stats, items=len(catalog), item_duplicates_skipped=catalog.duplicates_skipped,
                 valid_users=len(split.valid), test_users=len(split.test),
                 valid_repeats_skipped=split.valid.repeats_skipped, test_repeats_skipped=split.test.repeats_skipped)
    log.info("data %s: %s", folder, ", ".join(f"{k}={v}" for k, v in stats.items()))
    return Data(catalog, split, interactions.user_ids, stats)


def build_model(cfg: Config, data: Data) -> Recommender:
    if cfg.item_tower == "id":
        item_encoder = IdItemEncoder(len(data.catalog), cfg.embedding_dim)
    else:
        folder = checkpoint_dir(cfg)
        tokens = build_token_table(data.catalog, load_tokenizer(folder), cfg.text_field_list(), cfg.max_title_tokens)
        item_encoder = TextItemEncoder(load_text_backbone(folder), tokens, cfg.embedding_dim)
        log.info("item encoder %s: %d items, mean %.1f tokens", folder, len(data.catalog),
                 tokens.lengths[1:].float().mean())
    user_encoder = SASRecEncoder(cfg.embedding_dim, cfg.max_seq_len, cfg.num_blocks, cfg.num_heads, cfg.dropout)
    return Recommender(item_encoder, user_encoder, cfg.arch, cfg.loss, data.split.item_counts)
