"""Warm start: a finished target run's weights as the start of another run on the same target (LP-FT's second
stage, or content -> content + IDs), with what the two runs must share checked first."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from adapter4rec.checkpoint.files import CheckpointError, read_checkpoint
from adapter4rec.checkpoint.loading import ADAPTER_SETTINGS, MUST_MATCH, mismatches
from adapter4rec.config import Config

# what a warm-start run must share with the run it starts: the model, the target data (and which items it holds
# cold), the backbone under its head, and what the head was trained to read and score: the item features (which
# items, their text or images, pooling) and the score (dot or cosine, at which temperature). The item tower may
# go from content alone to content + target IDs (WARM_TOWERS): the fused run adds its ID table to the warm model.
WARM_MATCH = MUST_MATCH + ("arch", "item_encoder", "dataset", "users_file", "items_file", "source_checkpoint",
                           "modality", "item_pooling", "score", "learn_temperature", "item_head", "cold_items")
WARM_TOWERS = {("modal", "modal"), ("modal", "fused"), ("fused", "fused"), ("id", "id")}  # (warm run, this run)
# the same, for keys that only mean something under some settings: (key, when it matters, judged on either run)
WARM_MATCH_IF = (("text_fields", lambda c: c.get("modality", "text") == "text"),
                 ("max_title_tokens", lambda c: c.get("modality", "text") == "text"),
                 ("images_lmdb", lambda c: c.get("modality") == "image"),
                 ("missing_images", lambda c: c.get("modality") == "image"),
                 ("image_size", lambda c: c.get("modality") == "image"),
                 ("temperature", lambda c: c.get("score") == "cosine"))


def warm_mismatches(warm: dict, config: dict) -> list[str]:
    """`key: warm run A, this run B` for every setting in which a warm-start run's config differs from this run's
    where it must not (WARM_MATCH, WARM_TOWERS, WARM_MATCH_IF, and ADAPTER_SETTINGS when the warm run trained
    adapters); a key the warm run's file predates counts as its default."""
    defaults = dataclasses.asdict(Config())
    keys = list(WARM_MATCH) + [k for k, matters in WARM_MATCH_IF if matters(warm) or matters(config)]
    if warm.get("adapter", "none") != "none":
        keys += ADAPTER_SETTINGS
    towers = (warm.get("item_tower", defaults["item_tower"]), config.get("item_tower"))
    keys += [] if towers in WARM_TOWERS else ["item_tower"]
    if towers == ("fused", "fused"):  # the fusion's weights mean something only under the same fusion
        keys += ["item_fusion"]
    return [f"warm run {k}={warm.get(k, defaults.get(k))!r}, this run {k}={config.get(k)!r}" for k in keys
            if warm.get(k, defaults.get(k)) != config.get(k)]


def load_warm_start(model: torch.nn.Module, path: Path, config: dict) -> tuple[dict, dict]:
    """Load a finished target run's weights over `model` (after its source checkpoint, before adapters are added).

    This is the second stage of linear probing then fine-tuning (LP-FT, Kumar et al., ICLR 2022): the head and
    user encoder are trained first over the frozen backbone (cheap: its states are cached), and full fine-tuning or
    an adapter then starts from that trained model instead of an untrained head, which otherwise spends the first
    epochs of the expensive stage, and the backbone's features, on catching up. It also adds target item IDs to a
    trained content model (item_tower modal -> fused): the IDs then learn what the content misses.

    A PEFT run's checkpoint holds only what it trained. The tensors this model has now are loaded; the warm run's
    adapters (if it trained any) are returned, for finish_warm_start once this run has added the same adapters.
    Returns (its config, the tensors still to load)."""
    ckpt = read_checkpoint(path)
    warm = ckpt.get("config", {})
    if warm.get("stage") != "downstream":
        raise CheckpointError(f"{path}: warm_start reads a finished target (downstream) run's checkpoint; this one "
                              f"is stage={warm.get('stage')!r} (a source run goes to source_checkpoint)")
    if ckpt.get("kind") == "trainable" and warm.get("warm_start"):
        raise CheckpointError(f"{path}: this adapter run itself started from warm_start={warm['warm_start']}, and its "
                              f"checkpoint holds only what it trained, not the head and user encoder it inherited; "
                              f"export it to a full checkpoint (python -m adapter4rec export) and warm-start from "
                              f"that, or warm-start from {warm['warm_start']}")
    differ = warm_mismatches(warm, config)
    if differ:
        raise CheckpointError(f"{path}: the warm-start run differs from this run in {len(differ)} setting(s) that must "
                              f"match (the same model, target data, backbone, item features and score under the "
                              f"trained head): {'; '.join(differ)}; warm-start from a run with these settings, or "
                              f"set them as that run had them")
    own = model.state_dict()
    state = {k: v for k, v in ckpt["model"].items() if k in own}
    _, _, shapes = mismatches(own, state)
    if shapes:
        raise CheckpointError(f"{path} does not fit this model: {len(shapes)} shape mismatch(es) {shapes[:3]}")
    model.load_state_dict(state, strict=False)
    return warm, {k: v for k, v in ckpt["model"].items() if k not in own}


def finish_warm_start(model: torch.nn.Module, pending: dict, path: Path, warm: dict) -> None:
    """Load the warm run's (or a PEFT source's) adapter weights (load_warm_start's or load_source's rest) once
    this run has added its adapters; every one must now be in the model with the same shape."""
    _, unexpected, shapes = mismatches(model.state_dict(), pending)
    if unexpected or shapes:
        raise CheckpointError(f"{path} does not fit this model with its adapters (the warm run had "
                              f"adapter={warm.get('adapter')!r}): {len(unexpected)} unexpected key(s) "
                              f"{unexpected[:4]}, {len(shapes)} shape mismatch(es) {shapes[:3]}")
    model.load_state_dict(pending, strict=False)
