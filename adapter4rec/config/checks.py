"""The checks behind Config.validate: every value in range and every combination that cannot run refused, with
the key, the value and what is expected (ValueError; parse_args turns it into one line)."""
from __future__ import annotations

import dataclasses
import math

# every learning-rate key (each must be a finite number > 0)
LEARNING_RATES = ("lr", "item_encoder_lr", "item_adapter_lr", "user_adapter_lr")


def check(cfg) -> None:
    """Every cross-field and range check of a Config (Config.validate)."""
    for f in dataclasses.fields(cfg):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices:
            _bad(f.name, getattr(cfg, f.name), f"one of {', '.join(choices)}")
        value = getattr(cfg, f.name)  # nan / inf pass every comparison below as "in range" or fail it vaguely
        if isinstance(value, float) and not math.isfinite(value):
            _bad(f.name, value, "a finite number > 0 (a learning rate)" if f.name in LEARNING_RATES else
                 "a finite number")
    for key in ("max_seq_len", "embedding_dim", "num_blocks", "num_heads", "epochs", "batch_size",
                "eval_batch_size", "eval_item_chunk", "max_title_tokens"):
        if getattr(cfg, key) < 1:
            _bad(key, getattr(cfg, key), "an integer >= 1")
    for key in (*LEARNING_RATES, "lora_alpha", "item_adapter_size", "user_adapter_size", "kadapter_item_heads",
                "kadapter_user_heads", "compacter_n", "prompt_tokens", "temperature"):
        if not getattr(cfg, key) > 0:
            _bad(key, getattr(cfg, key), "a positive number")
    for key in ("weight_decay", "grad_clip", "max_steps_per_epoch", "patience", "num_workers", "save_every_steps",
                "adapter_layers", "phm_init_range", "keep_last", "softmax_negatives", "warmup_steps", "image_size"):
        if getattr(cfg, key) < 0:
            _bad(key, getattr(cfg, key), "a number >= 0")
    if cfg.min_seq_len < 3:
        _bad("min_seq_len", cfg.min_seq_len, "an integer >= 3 (a training pair, a validation and a test item)")
    if not 0 < cfg.user_fraction <= 1:
        _bad("user_fraction", cfg.user_fraction, "a number in (0, 1]")
    for key in ("dropout", "adapter_dropout"):
        if not 0 <= getattr(cfg, key) < 1:
            _bad(key, getattr(cfg, key), "a number in [0, 1)")
    if cfg.adapter != "none" and cfg.item_tower == "id" and cfg.adapter_where != "user":
        _bad("adapter_where", cfg.adapter_where, "user when item_tower=id (an ID table has no layers)")
    if cfg.adapter == "side":
        if cfg.tune != "peft":
            _bad("tune", cfg.tune, "peft with adapter=side (the side network reads a frozen backbone)")
        if cfg.adapter_where == "user":
            _bad("adapter_where", cfg.adapter_where, "item or both with adapter=side (an item-encoder method)")
        if cfg.tune_layernorm or cfg.tune_bias:
            _bad("tune_layernorm" if cfg.tune_layernorm else "tune_bias", True, "false with adapter=side: the "
                 "side network never runs the backbone, so its LayerNorms and biases would get no gradient")
        if not cfg.side_cache_max_gb > 0:
            _bad("side_cache_max_gb", cfg.side_cache_max_gb, "a positive number")
    if cfg.adapter == "prompt" and cfg.adapter_where != "item":
        _bad("adapter_where", cfg.adapter_where, "item with adapter=prompt (prompts go into the item encoder)")
    if cfg.embedding_dim % cfg.num_heads:
        _bad("num_heads", cfg.num_heads, f"a divisor of embedding_dim={cfg.embedding_dim}")
    try:
        ks = cfg.topk_list()
    except ValueError:
        ks = []
    if not ks or min(ks) < 1:
        _bad("topk", cfg.topk, "a comma list of positive integers, e.g. 5,10,20")
    name, _, k = cfg.select_metric.partition("@")
    if name not in ("hr", "ndcg", "mrr") or not k.isdigit() or int(k) not in ks:
        _bad("select_metric", cfg.select_metric, f"hr@K, ndcg@K or mrr@K with K in topk={cfg.topk}")
    if cfg.learn_temperature and cfg.score != "cosine":
        _bad("learn_temperature", cfg.learn_temperature, "false unless score=cosine (a dot product has no "
             "temperature)")
    bad_fields = set(cfg.text_field_list()) - {"title", "abstract"}
    if bad_fields or not cfg.text_field_list():
        _bad("text_fields", cfg.text_fields, "a comma list of: title, abstract")
    if cfg.stage == "pretrain" and cfg.source_checkpoint:
        _bad("source_checkpoint", cfg.source_checkpoint, "empty when stage=pretrain")
    if cfg.init_std < 0:
        _bad("init_std", cfg.init_std, "0 (xavier_normal) or a positive standard deviation")
    if cfg.stage == "pretrain" and cfg.warm_start:
        _bad("warm_start", cfg.warm_start, "empty when stage=pretrain")
    if cfg.learn_temperature and cfg.temperature < 0.01:
        _bad("temperature", cfg.temperature, ">= 0.01 with learn_temperature (a learned 1/tau is capped at 100)")
    _check_transfer_extras(cfg)


def _check_transfer_extras(cfg) -> None:
    """The ID + content tower, the whitening head, the cold-start study and zero-shot evaluation."""
    if not 0 <= cfg.id_dropout < 1:
        _bad("id_dropout", cfg.id_dropout, "a share in [0, 1)")
    if cfg.head_experts < 1:
        _bad("head_experts", cfg.head_experts, "a positive number of experts")
    if cfg.modality == "text" and cfg.max_title_tokens < 3:  # [CLS] and [SEP] take two: 1 was ignored, 2 left none
        _bad("max_title_tokens", cfg.max_title_tokens, "at least 3 (the [CLS] and [SEP] tokens take two; fewer "
             "would make every item the same two tokens)")
    if not 0 <= cfg.domain_temperature <= 1:
        _bad("domain_temperature", cfg.domain_temperature, "an exponent in [0, 1]")
    if not 0 <= cfg.cold_items < 1:
        _bad("cold_items", cfg.cold_items, "a share of the items in [0, 1)")
    # settings that act only on some runs: a non-default value elsewhere would be silently ignored
    if cfg.item_tower != "fused":
        for key, default in (("id_dropout", 0.0), ("item_fusion", "sum")):
            if getattr(cfg, key) != default:
                _bad(key, getattr(cfg, key), f"the default ({default!r}) unless item_tower=fused (it acts on the "
                     f"target ID table only; this run has item_tower={cfg.item_tower!r})")
    if cfg.item_head != "moe" and cfg.head_experts != 8:
        _bad("head_experts", cfg.head_experts, "the default (8) unless item_head=moe (it counts the MoE head's experts)")
    if "," not in cfg.dataset:
        for key, default in (("pool_exclude_items", ""), ("domain_sampling", "proportional"),
                             ("mixed_negatives", False)):
            if getattr(cfg, key) != default:
                _bad(key, getattr(cfg, key), f"the default ({default!r}) unless dataset is a pool of several "
                     f"folders (a comma list)")
    if cfg.item_tower == "id" and cfg.item_head != "linear":
        _bad("item_head", cfg.item_head, "linear with item_tower=id (an ID table has no head)")
    if cfg.zero_shot and (cfg.stage != "downstream" or not cfg.source_checkpoint or cfg.warm_start
                          or cfg.item_tower != "modal"):
        _bad("zero_shot", True, "only with stage=downstream, a source_checkpoint, item_tower=modal, no warm_start "
             "and the source's own adapter (none, or the side network a pool source trained): the source model "
             "is evaluated as it is, nothing new may be added to it")


def _bad(key: str, value, expected: str):
    raise ValueError(f"config: {key}={value!r} is invalid; expected {expected}")
