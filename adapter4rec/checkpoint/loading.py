"""Loading weights into a model: a source checkpoint (before adapters), a run's own checkpoint, with every key
and shape checked and the misfit listed in one line."""
from __future__ import annotations

from pathlib import Path

import torch

from adapter4rec.checkpoint.files import CheckpointError, read_checkpoint

# settings that must match between a source checkpoint and the model it is loaded into
MUST_MATCH = ("embedding_dim", "num_blocks", "num_heads", "max_seq_len")
# parameters a source never hands over: the target's own ID table and its fusion (a source's are another domain's)
TARGET_ONLY = ("item_encoder.id_fusion.",)


def mismatches(own: dict, state: dict) -> tuple[list[str], list[str], list[str]]:
    """(keys of `own` missing from `state`, keys of `state` not in `own`, shape mismatches as text)."""
    shapes = [f"{k}: checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
              for k in own if k in state and state[k].shape != own[k].shape]
    return sorted(set(own) - set(state)), sorted(set(state) - set(own)), shapes


FROZEN_BACKBONE = "item_encoder.backbone."  # what a PEFT source did not train and so does not hold


def load_source(model: torch.nn.Module, path: Path, config: dict) -> tuple[dict, dict]:
    """Load a source-domain checkpoint into `model` (before adapters are added).

    Every model key must be present with the same shape, and the checkpoint may hold no extra key; the
    error lists what does not fit. A PEFT source (a pool source: a side network, head and user encoder trained
    over the frozen backbone) holds only what it trained: its backbone is the same pretrained checkpoint
    (item_encoder must match), and its adapters load once this run has added the same ones (ADAPTER_SETTINGS
    must match). Returns (the checkpoint's stored config, its adapter tensors still to load: load_pending)."""
    ckpt = read_checkpoint(path)
    source_cfg = ckpt.get("config", {})
    if ckpt.get("kind", "full") == "trainable":
        return source_cfg, _load_peft_source(model, path, ckpt, config)
    source_cfg = ckpt.get("config", {})
    if source_cfg.get("item_tower") == "id" or config.get("item_tower") == "id":
        raise CheckpointError(f"{path}: an ID item tower cannot transfer to a new domain (its items differ); "
                              f"use item_tower=modal (or fused) in both stages")
    for key in MUST_MATCH:
        if key in source_cfg and source_cfg[key] != config.get(key):
            raise CheckpointError(f"{path}: source {key}={source_cfg[key]!r} but this run has "
                                  f"{key}={config.get(key)!r}; they must match to transfer")
    fresh = fresh_on_target(source_cfg, config)
    state = {k: v for k, v in ckpt["model"].items() if not k.startswith(fresh)}
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(fresh)}
    missing, unexpected, shapes = mismatches(own, state)
    if missing or unexpected or shapes:
        enc = source_cfg.get("item_encoder", "?")
        raise CheckpointError(
            f"{path} does not fit this model (source item_encoder={enc!r}, this run "
            f"item_encoder={config.get('item_encoder')!r}): {len(missing)} missing key(s) {missing[:4]}, "
            f"{len(unexpected)} unexpected key(s) {unexpected[:4]}, {len(shapes)} shape mismatch(es) {shapes[:3]}")
    model.load_state_dict(state, strict=False)  # every key but the fresh ones, checked both ways above
    return source_cfg, {}


def _load_peft_source(model: torch.nn.Module, path: Path, ckpt: dict, config: dict) -> dict:
    """load_source for a source that saved only its trainable tensors; returns its adapters' tensors."""
    source_cfg = ckpt["config"]
    differ = [f"source {k}={source_cfg.get(k)!r}, this run {k}={config.get(k)!r}" for k in
              ("item_encoder", "modality", "item_tower") + MUST_MATCH if source_cfg.get(k) != config.get(k)]
    if source_cfg.get("adapter", "none") != "none":
        differ += [f"source {k}={source_cfg.get(k)!r}, this run {k}={config.get(k)!r}" for k in ADAPTER_SETTINGS
                   if source_cfg.get(k) != config.get(k)]
    if differ:
        raise CheckpointError(f"{path}: a source that trained only part of its model (tune=peft) hands over its "
                              f"trained part over the same frozen backbone, with the same adapters; it differs "
                              f"from this run in: {'; '.join(differ)}")
    fresh = fresh_on_target(source_cfg, config)
    own = {k: v for k, v in model.state_dict().items() if not k.startswith(fresh)}
    state = {k: v for k, v in ckpt["model"].items() if not k.startswith(fresh)}
    untrained = sorted(k for k in set(own) - set(state) if not k.startswith(FROZEN_BACKBONE))
    _, _, shapes = mismatches(own, state)
    if untrained or shapes:
        raise CheckpointError(f"{path} does not fit this model: {len(untrained)} key(s) the source neither trained "
                              f"nor took from the pretrained backbone {untrained[:4]}, {len(shapes)} shape "
                              f"mismatch(es) {shapes[:3]}")
    model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    return {k: v for k, v in state.items() if k not in own}


def fresh_on_target(source_cfg: dict, config: dict) -> tuple[str, ...]:
    """Key prefixes the target starts afresh instead of loading: the target-only ID fusion, and the item head when
    the source's is of another kind (item_head: a linear source head under a whitening MoE target head)."""
    if source_cfg.get("item_head", "linear") != config.get("item_head", "linear"):
        return TARGET_ONLY + ("item_encoder.proj.",)
    return TARGET_ONLY


# a warm run that trained adapters hands them over: this run must add the same ones (their shapes alone cannot
# tell every setting apart, e.g. side_pooling)
ADAPTER_SETTINGS = ("adapter", "adapter_where", "adapter_sublayers", "adapter_layers", "item_adapter_size",
                    "user_adapter_size", "adapter_activation", "user_adapter", "side_layers", "side_pooling",
                    "lora_alpha", "kadapter_item_heads", "kadapter_user_heads", "compacter_n", "prompt_tokens")


def load_run_weights(model: torch.nn.Module, ckpt: dict) -> None:
    """Load a run's own checkpoint into a model built the same way (adapters added, trainability set).

    A 'trainable' checkpoint (PEFT) must hold exactly the model's trainable parameters; a 'full' one every key."""
    state = ckpt["model"]
    if ckpt.get("kind", "full") == "full":
        model.load_state_dict(state, strict=True)
        return
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing, extra = sorted(trainable - set(state)), sorted(set(state) - trainable)
    if missing or extra:
        raise CheckpointError(f"adapter checkpoint does not match this model's trainable parameters: "
                              f"{len(missing)} missing {missing[:4]}, {len(extra)} unexpected {extra[:4]} "
                              f"(built with adapter={ckpt.get('config', {}).get('adapter')!r}?)")
    model.load_state_dict(state, strict=False)
