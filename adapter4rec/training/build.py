"""From a Config to data and a model: files -> catalog, interactions, split -> Recommender."""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import torch

from adapter4rec.config import Config
from adapter4rec.data.files import (DataError, Interactions, ItemCatalog, read_item_names, read_items,
                                    read_users, subsample_users)
from adapter4rec.data.images import ImageSpec, PixelTable, decode_pixels, pixel_key, pixel_shape, summary
from adapter4rec.data.pool import is_pool, pool_folders, read_pool
from adapter4rec.data.split import Domains, LeaveOneOut, cold_start_items, leave_one_out
from adapter4rec.data.store import DiskStore, key_digest
from adapter4rec.data.text import TokenTable, build_token_table, pack, token_key, unpack
from adapter4rec.models.cnn_backbone import cnn_config, refuse_settings
from adapter4rec.models.fusion import IdFusion
from adapter4rec.models.item_encoders import IdItemEncoder, ImageItemEncoder, TextItemEncoder
from adapter4rec.models.losses import Scorer
from adapter4rec.models.negatives import training_groups
from adapter4rec.models.pretrained import checkpoint_dir, image_spec, load_backbone, load_tokenizer
from adapter4rec.models.recommender import Recommender
from adapter4rec.models.user_encoder import SASRecEncoder
from adapter4rec.run.record import module_seed

log = logging.getLogger(__name__)


@dataclass
class Data:
    catalog: ItemCatalog
    split: LeaveOneOut
    user_ids: list[str]
    stats: dict
    domains: Domains | None = None  # a pool of several datasets (data/pool.py); None for one dataset
    cold: torch.Tensor | None = None  # (num_items+1,) bool the items held out of training (cold_items); None: none


def read_catalog_and_users(cfg: Config) -> tuple[ItemCatalog, Interactions, Domains | None]:
    """The run's items and users: one dataset folder, or a pool of several (data/pool.py) with its Domains."""
    if is_pool(cfg.dataset):
        if cfg.modality != "text":
            raise DataError(f"dataset={cfg.dataset!r}: a pool of several datasets is for text items")
        folders = [cfg.resolve(folder) for folder in pool_folders(cfg.dataset)]
        exclude = cfg.resolve(cfg.pool_exclude_items) if cfg.pool_exclude_items else None
        return read_pool(folders, cfg.items_file, cfg.users_file, cfg.min_seq_len, cfg.unknown_items, exclude)
    folder = cfg.resolve(cfg.dataset)
    catalog = read_items(folder / cfg.items_file) if cfg.modality == "text" else read_item_names(folder / cfg.items_file)
    return catalog, read_users(folder / cfg.users_file, catalog.index, cfg.min_seq_len, cfg.unknown_items), None


def load_data(cfg: Config) -> Data:
    folder = cfg.resolve(pool_folders(cfg.dataset)[0]) if is_pool(cfg.dataset) else cfg.resolve(cfg.dataset)
    catalog, interactions, domains = read_catalog_and_users(cfg)
    cold = cold_start_items(len(catalog), cfg.cold_items)  # None unless the cold-start study asks for it
    if cold is not None and not 1 <= int(cold.sum()) <= len(catalog) - 2:
        raise DataError(f"cold_items={cfg.cold_items}: of the {len(catalog)} items this holds out "
                        f"{int(cold.sum())}; a cold-start study needs at least one item held out and two left to "
                        f"train on (choose a share between {1 / len(catalog):.2g} and {1 - 2 / len(catalog):.2g})")
    split = leave_one_out(interactions, cfg.max_seq_len, cfg.eval_repeats, cfg.eval_candidates, cfg.train_windows,
                          cold)
    for name, part in (("validation", split.valid), ("test", split.test)):
        if not len(part):  # every metric would be a mean over no users; refused here, not reported as numbers
            raise DataError(f"{folder / cfg.users_file}: no {name} user left: of the {len(interactions.sequences)} "
                            f"users kept ({interactions.stats['short_users_skipped']} shorter than min_seq_len="
                            f"{cfg.min_seq_len} skipped), {part.repeats_skipped} have a {name} item that repeats an "
                            f"item of their history, which eval_repeats={cfg.eval_repeats} leaves out. Set "
                            f"eval_repeats=no_mask to rank them, or use data where some user's {name} item is new")
    train_users = len(interactions.sequences)
    if cfg.user_fraction < 1:  # train on a nested share of the users; validate and test on all of them
        share = subsample_users(interactions, cfg.user_fraction, cfg.user_fraction_seed)
        trained = leave_one_out(share, cfg.max_seq_len, cfg.eval_repeats, windows=cfg.train_windows, cold=cold)
        train_users = len(share.sequences)
        split = LeaveOneOut(trained.train, split.valid, split.test, trained.item_counts, split.test_no_mask)
    for part in (split.valid, split.test, split.test_no_mask):
        if part is not None:
            part.domains = domains
    candidates = len(catalog) if split.valid.candidates is None else int(split.valid.candidates.sum())
    stats = dict(interactions.stats, train_users=train_users, train_windows=len(split.train), items=len(catalog),
                 ranked_items=candidates,
                 item_duplicates_skipped=catalog.duplicates_skipped,
                 valid_users=len(split.valid), test_users=len(split.test),
                 items_never_trained=int((split.window_counts[1:] == 0).sum()),
                 valid_repeats_skipped=split.valid.repeats_skipped, test_repeats_skipped=split.test.repeats_skipped)
    log.info("data %s: %s", cfg.dataset if domains is not None else folder,
             ", ".join(f"{k}={v}" for k, v in stats.items() if k != "domains"))
    return Data(catalog, split, interactions.user_ids, stats, domains, cold)


def build_model(cfg: Config, data: Data) -> Recommender:
    """The model before adapters and loaded weights. Each module draws its initial values from its own stream
    (run/record.module_seed): adding a module (the fused tower's ID table) changes no other module's start."""
    with module_seed(cfg.seed, "item_encoder"):
        item_encoder = _item_encoder(cfg, data)
    if cfg.item_tower == "fused":  # the target's own ID table: an item that never occurs in training has none
        with module_seed(cfg.seed, "id_fusion"):
            item_encoder.id_fusion = IdFusion(len(data.catalog), cfg.embedding_dim, cfg.item_fusion,
                                              known=data.split.window_counts > 0, id_dropout=cfg.id_dropout,
                                              init_std=cfg.init_std)
    with module_seed(cfg.seed, "user_encoder"):
        user_encoder = SASRecEncoder(cfg.embedding_dim, cfg.max_seq_len, cfg.num_blocks, cfg.num_heads,
                                     cfg.dropout, cfg.init_std)
    scorer = Scorer(cfg.score, cfg.temperature, cfg.learn_temperature)
    groups = training_groups(len(data.catalog), data.domains, data.cold, cfg.mixed_negatives)
    return Recommender(item_encoder, user_encoder, cfg.arch, cfg.loss, data.split.window_counts, scorer,
                       cfg.inbatch_correction, cfg.softmax_negatives, cfg.gather_negatives, groups)


def _item_encoder(cfg: Config, data: Data):
    if cfg.item_tower == "id":
        return IdItemEncoder(len(data.catalog), cfg.embedding_dim, cfg.init_std)
    folder = checkpoint_dir(cfg)
    if cfg.modality == "image":
        if cnn_config(folder) is not None:  # before the pixels are decoded: what a CNN cannot run, in one line
            refuse_settings(cfg, folder)
        backbone = load_backbone(folder, "image")
        spec = image_spec(folder, backbone.config, cfg.image_size)
        return ImageItemEncoder(backbone, pixel_table(cfg, data, spec), spec, cfg.embedding_dim, cfg.item_pooling,
                                head=cfg.item_head, experts=cfg.head_experts)
    tokens = token_table(cfg, data, folder)
    return TextItemEncoder(load_backbone(folder, "text"), tokens, cfg.embedding_dim, cfg.item_pooling,
                           head=cfg.item_head, experts=cfg.head_experts)


def token_table(cfg: Config, data: Data, folder) -> TokenTable:
    """Every item's tokens, tokenised once per dataset and tokenizer and kept in the item store under cache_dir."""
    items_files = [cfg.resolve(folder) / cfg.items_file for folder in pool_folders(cfg.dataset)]
    if cfg.pool_exclude_items and len(items_files) > 1:
        items_files.append(cfg.resolve(cfg.pool_exclude_items))  # what is left out changes every id after it
    fields = cfg.text_field_list()
    if "abstract" in fields:  # the items file's third column: a setting that reads an empty column does nothing
        missing = sum(1 for text in data.catalog.abstracts if not text.strip())
        if missing == len(data.catalog):
            raise DataError(f"{items_files[0]}: text_fields={cfg.text_fields!r} reads the abstract (third column), "
                            f"which no item has; set text_fields=title or add the column")
        if missing:
            log.warning("text_fields=%s: %d of %d items have no abstract (%s)", cfg.text_fields, missing,
                        len(data.catalog), "their title is encoded instead" if fields == ["abstract"] else
                        "encoded from the title alone")
        data.stats["items_without_abstract"] = missing

    def compute() -> tuple[torch.Tensor, dict]:
        return pack(build_token_table(data.catalog, load_tokenizer(folder), fields, cfg.max_title_tokens))
    store = DiskStore(cfg.resolve(cfg.cache_dir))
    packed = store.get_or_compute(token_key(items_files, folder, fields, cfg.max_title_tokens), "int32", compute)
    tokens = unpack(packed, store.report["facts"])
    log.info("item tokens %s (%s): %d items, mean %.1f tokens, %d text(s) longer than max_title_tokens=%d cut",
             Path(store.report["path"]).name, "cached" if store.report["hit"] else "tokenised now",
             len(data.catalog), tokens.lengths[1:].float().mean(), tokens.truncated, cfg.max_title_tokens)
    data.stats["texts_truncated"] = tokens.truncated
    return tokens


def pixel_table(cfg: Config, data: Data, spec: ImageSpec) -> PixelTable:
    """The decoded-pixel table of the run's items at the encoder's input size, in the item store: built once (by
    local rank 0 of each node, with DataLoader workers over the LMDB), then reused by every run and rank that needs
    the same pixels."""
    store = cfg.resolve(cfg.dataset) / cfg.images_lmdb  # an absolute images_lmdb replaces the folder
    if not store.exists():
        raise DataError(f"image LMDB {store} does not exist: build it with Dataset/build_lmdb.py, or set "
                        f"images_lmdb")
    names = data.catalog.ids

    def fill(write) -> dict:
        log.info("decoding %d item images from %s", len(names), store)
        return decode_pixels(store, names, spec, write, cfg.missing_images, cfg.num_workers)
    cache, key = DiskStore(cfg.resolve(cfg.cache_dir)), pixel_key(store, names, spec, cfg.missing_images)
    pixels = cache.get_or_build(key, pixel_shape(names, spec), "uint8", fill)
    report = cache.report["facts"]
    log.info("item images: %s", summary(report))
    data.stats.update(images_missing=len(report["missing"]), images_corrupt=len(report["corrupt"]))
    return PixelTable(pixels, key_digest(key))
