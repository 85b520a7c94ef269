"""Load the ORIGINAL Adapter4Rec code's checkpoints (`epoch-N.pt`: SASRec+BERT, CPC+BERT, SASRec+ViT, CPC+ViT,
and MAE runs) into our models.

The original saved `{'model_state_dict', 'optimizer', 'rng_state', 'cuda_rng_state'}` (reference §8); only
`model_state_dict` is used. Load into the plain model, before adapters are added (as the original did).
The file records no hyper-parameters: build the model with the original's settings (embedding_dim 64,
num_blocks 2, num_heads 2, max_seq_len 20 text / 10 image, the same item encoder folder). Shapes give away
d, L and the block count (checked), but NOT num_heads: a wrong head count loads silently and computes
something else. Nor does the file say SASRec or CPC (same network, different loss): set `arch` yourself.

Key correspondence (original, after stripping a DDP `module.` prefix -> ours); `{i}` = block index:
  user_encoder.transformer_encoder.position_embedding.weight  -> user_encoder.position.weight
  user_encoder.transformer_encoder.layer_norm.*                -> user_encoder.input_norm.*
  ...transformer_blocks.{i}.multi_head_attention.w_Q.weight    -> user_encoder.blocks.{i}.attention.query.weight
  ...transformer_blocks.{i}.multi_head_attention.w_K.weight    -> user_encoder.blocks.{i}.attention.key.weight
  ...transformer_blocks.{i}.multi_head_attention.w_V.weight    -> user_encoder.blocks.{i}.attention.value.weight
  ...transformer_blocks.{i}.multi_head_attention.fc.weight     -> user_encoder.blocks.{i}.attention.out.weight
  ...transformer_blocks.{i}.multi_head_attention.layer_norm.*  -> user_encoder.blocks.{i}.attention_output.norm.*
  ...transformer_blocks.{i}.feed_forward.w_1.*                 -> user_encoder.blocks.{i}.feed_forward.fc1.*
  ...transformer_blocks.{i}.feed_forward.w_2.*                 -> user_encoder.blocks.{i}.feed_forward.fc2.*
  ...transformer_blocks.{i}.feed_forward.layer_norm.*          -> user_encoder.blocks.{i}.feed_forward_output.norm.*
  bert_encoder.text_encoders.title.bert_model.<HF keys>        -> item_encoder.backbone.<HF keys>
  bert_encoder.text_encoders.title.fc.*                        -> item_encoder.proj.*
  cv_encoder.image_net.vit.<ViTModel keys>                     -> item_encoder.backbone.<keys>       (ViT)
  cv_encoder.image_net.classifier.*                            -> item_encoder.proj.*                (ViT)
  cv_encoder.image_net.<ViTMAEModel keys>                      -> item_encoder.backbone.<keys>       (MAE)
  cv_encoder.cv_proj.*                                         -> item_encoder.proj.*                (MAE)
Intentionally dropped (our backbones do not have them): `...pooler.*` (BERT's pooler; the original froze it
and never used it: items take the CLS hidden state) and the `embeddings.position_ids` /
`embeddings.token_type_ids` index buffers that transformers recreates. MAE's fixed sin-cos
`embeddings.position_embeddings` is a parameter in the original and a buffer in ours (same key, loaded).

Does a loaded model compute what the original computed? Checked against the original modules.py/encoders.py:
- User encoder: the same. LN(eps 1e-6)(item + position) -> dropout; per block post-LN
  x = LN(x + Drop(fc(attn))), x = LN(x + Drop(w_2(ReLU(w_1 x)))); no final LN; bias-free Q/K/V/fc;
  scores scaled by 1/sqrt(d/heads) (SDPA's default = the original's temperature sqrt(d_k)); dropout on the
  attention probabilities. ONE difference, harmless: the original's mask (tril AND key-is-real, as -1e9)
  leaves a left-padding query row with every key masked, so it attends uniformly to ALL positions (real
  future items included); ours lets it attend to itself only. Real rows never read padded keys, and padded
  rows are never scored, so user states at real positions (and every loss and metric) are identical; only
  the unused padded-position outputs differ.
- Text items: GELU(fc(BERT(ids, mask)[0][:, 0])) in both. Inputs can differ: the original lower-cased titles
  before tokenizing (no-op for uncased BERT; it matters for a cased RoBERTa) and truncated to 30 tokens
  (our max_title_tokens, default 30); right padding to 30 vs to the batch's longest title is masked out.
  Transformers 4.57 runs SDPA attention where 4.20 ran eager: float-rounding differences only.
- ViT items: the original's GELU(classifier(LN(last)[:, 0])) equals our GELU(proj(last_hidden_state[:, 0])),
  ViTModel's last_hidden_state being after the final LayerNorm. The original fed Resize(224) + 0.5/0.5
  normalisation; ours reads size/mean/std from the folder's preprocessor_config.json (0.5/0.5 for
  google/vit-base-patch16-224, so the same).
- MAE items: DIFFERENT, on purpose. The original's ViTMAEModel masked a random 75% of the patches on every
  forward, evaluation included, so its CLS state saw 49 random patches of 196; ours encodes every patch
  (mask_ratio 0, see models/pretrained.py). A loaded MAE checkpoint therefore gives deterministic,
  full-image item embeddings that differ from (and are shifted relative to) the ones it was trained on;
  fine-tune before comparing numbers. The original also normalised with 0.5/0.5 while the MAE folder's
  preprocessor_config.json (read by us) has ImageNet mean/std.
"""
from __future__ import annotations

import pickle
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from adapter4rec.errors import UserError

ORIGINAL_STATE = "model_state_dict"
_USER = r"user_encoder\.transformer_encoder\."
_BLOCK = _USER + r"transformer_blocks\.(\d+)\."
_BLOCK_SUBLAYERS = {  # original sub-module inside a block -> ours
    r"multi_head_attention\.w_Q": "attention.query", r"multi_head_attention\.w_K": "attention.key",
    r"multi_head_attention\.w_V": "attention.value", r"multi_head_attention\.fc": "attention.out",
    r"multi_head_attention\.layer_norm": "attention_output.norm", r"feed_forward\.w_1": "feed_forward.fc1",
    r"feed_forward\.w_2": "feed_forward.fc2", r"feed_forward\.layer_norm": "feed_forward_output.norm",
}
# (original key pattern, our key template), tried in order, first full match wins: the ViT rules must come
# before the generic MAE `cv_encoder.image_net.*` rule, which would otherwise swallow `vit.*`/`classifier.*`.
RULES: tuple[tuple[re.Pattern, str], ...] = tuple((re.compile(p), t) for p, t in (
    (_USER + r"position_embedding\.(weight)", r"user_encoder.position.\1"),
    (_USER + r"layer_norm\.(weight|bias)", r"user_encoder.input_norm.\1"),
    *((_BLOCK + orig + r"\.(weight|bias)", r"user_encoder.blocks.\1." + ours + r".\2")
      for orig, ours in _BLOCK_SUBLAYERS.items()),
    (r"bert_encoder\.text_encoders\.title\.bert_model\.(.+)", r"item_encoder.backbone.\1"),
    (r"bert_encoder\.text_encoders\.title\.fc\.(weight|bias)", r"item_encoder.proj.\1"),
    (r"cv_encoder\.image_net\.vit\.(.+)", r"item_encoder.backbone.\1"),
    (r"cv_encoder\.image_net\.classifier\.(weight|bias)", r"item_encoder.proj.\1"),
    (r"cv_encoder\.cv_proj\.(weight|bias)", r"item_encoder.proj.\1"),
    (r"cv_encoder\.image_net\.(.+)", r"item_encoder.backbone.\1"),
))
# backbone entries dropped on purpose when our backbone lacks them (see the module docstring)
DROPPABLE = re.compile(r"item_encoder\.backbone\.(pooler\..+|embeddings\.(position_ids|token_type_ids))")
# our buffers rebuilt from the data or the item-encoder folder, never taken from a checkpoint
DATA_DERIVED = re.compile(r"(.+\.)?(log_popularity|token_ids|token_lengths|mean|std)")
# item-encoder family of a checkpoint by key prefix (after `module.`), first match wins; human-readable names
FAMILIES = (("bert_encoder.", "text"), ("cv_encoder.image_net.vit.", "vit"),
            ("cv_encoder.image_net.classifier.", "vit"), ("cv_encoder.cv_proj.", "mae"),
            ("id_embedding.", "id"))
FAMILY_NAMES = {"text": "text (BERT/RoBERTa)", "vit": "image (ViT)", "mae": "image (MAE)",
                "id": "ID embeddings (not transferable)"}


class OriginalCheckpointError(UserError, RuntimeError):
    pass


@dataclass
class _Mapping:
    state: dict = field(default_factory=dict)       # our key -> tensor
    unmapped: list = field(default_factory=list)    # original keys with no place in the model
    missing: list = field(default_factory=list)     # our keys left without a value
    dropped: list = field(default_factory=list)     # original keys dropped on purpose


def is_original_checkpoint(obj) -> bool:
    """True for the original code's checkpoint dict (ours carry a 'format' key and a 'model' entry)."""
    return isinstance(obj, dict) and ORIGINAL_STATE in obj and "format" not in obj


def _strip_ddp(key: str) -> str:
    while key.startswith("module."):
        key = key[len("module."):]
    return key


def our_key(original_key: str) -> str | None:
    """Our name for an original state-dict key (None when no rule applies); a DDP `module.` prefix is
    stripped first (the original saved `model.module.state_dict()`, but copies saved from the wrapper exist)."""
    key = _strip_ddp(original_key)
    for pattern, template in RULES:
        match = pattern.fullmatch(key)
        if match:
            return match.expand(template)
    return None


def _checkpoint_families(keys) -> set[str]:
    return {family for key in keys for prefix, family in FAMILIES if _strip_ddp(key).startswith(prefix)}


def _model_family(model: nn.Module) -> str:
    """text / vit / mae / id / other, from our item encoder (its backbone's model_type for images)."""
    item = getattr(model, "item_encoder", None)
    kind = type(item).__name__
    if kind == "ImageItemEncoder":
        return {"vit": "vit", "vit_mae": "mae"}.get(item.backbone.config.model_type, "other")
    return {"TextItemEncoder": "text", "IdItemEncoder": "id"}.get(kind, "other")


def _check_family(state: dict, model: nn.Module) -> None:
    """A text checkpoint in an image model (or ViT in MAE) would otherwise fail key by key, or worse, partly
    fit: BERT and ViT share many sub-module names. Say what each side is instead."""
    found, own = _checkpoint_families(state), _model_family(model)
    if found and own != "other" and found != {own}:
        names = ", ".join(sorted(FAMILY_NAMES[f] for f in found))
        raise OriginalCheckpointError(f"the checkpoint holds a {names} item encoder but this model's item "
                                      f"encoder is {FAMILY_NAMES[own]} ({type(model.item_encoder).__name__}); "
                                      f"set modality/item_encoder/item_tower to match the checkpoint")


def _data_derived_buffers(model: nn.Module) -> set[str]:
    return {name for name, _ in model.named_buffers() if DATA_DERIVED.fullmatch(name)}


def _map(state: dict, model: nn.Module) -> _Mapping:
    _check_family(state, model)
    own = model.state_dict()
    out, shapes = _Mapping(), []
    for key, value in state.items():
        target = our_key(key)
        if target is None or target not in own:
            (out.dropped if target and DROPPABLE.fullmatch(target) else out.unmapped).append(key)
            continue
        if target in out.state:  # e.g. both `module.x` and `x` in one file: which one is meant is unknowable
            raise OriginalCheckpointError(f"two checkpoint keys map onto {target}; the second is {key}")
        if not isinstance(value, torch.Tensor):
            raise OriginalCheckpointError(f"checkpoint key {key} holds a {type(value).__name__}, not a tensor")
        if tuple(value.shape) != tuple(own[target].shape):
            shapes.append(f"{key} -> {target}: checkpoint {tuple(value.shape)} vs model {tuple(own[target].shape)}")
            continue
        out.state[target] = value
    if shapes:
        raise OriginalCheckpointError(
            f"{len(shapes)} shape mismatch(es) between the original checkpoint and this model (different "
            f"embedding_dim, max_seq_len or item encoder size?): " + "; ".join(shapes[:6]))
    skip = _data_derived_buffers(model)
    out.missing = [k for k in own if k not in out.state and k not in skip]
    return out


def map_original_state_dict(state: dict, model: nn.Module) -> tuple[dict, list[str], list[str]]:
    """(our state dict, original keys with no place in `model`, our keys left without a value).

    Intentionally dropped keys (pooler, position_ids) are in neither list; data-derived buffers are not
    counted as missing. A shape mismatch raises OriginalCheckpointError naming the key and both shapes."""
    mapped = _map(state, model)
    return mapped.state, mapped.unmapped, mapped.missing


def read_original(path: Path) -> dict:
    """The checkpoint dict, read with weights_only=True (tensors and plain containers only: the original's
    optimizer state dict and rng_state ByteTensors qualify)."""
    path = Path(path)
    if not path.is_file():
        raise OriginalCheckpointError(f"original checkpoint {path} does not exist")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise OriginalCheckpointError(
            f"{path} holds Python objects other than tensors and plain containers, which are not loaded "
            f"(unpickling runs code). If you trust the file, keep only its weights, once: "
            f"torch.save({{'{ORIGINAL_STATE}': torch.load(p, weights_only=False)['{ORIGINAL_STATE}']}}, p2). "
            f"torch said: {str(err).splitlines()[0]}") from None
    except Exception as err:  # torch raises several types for truncated or non-torch files
        raise OriginalCheckpointError(f"{path} cannot be read ({type(err).__name__}: {err}); is it truncated "
                                      f"or not a torch checkpoint?") from None
    return checked_original(ckpt, path)


def checked_original(ckpt, path: Path) -> dict:
    """`ckpt` (what a torch.load of `path` gave) if it is an original checkpoint with a state dict."""
    if not is_original_checkpoint(ckpt):
        what = "an adapter4rec checkpoint (use source_checkpoint)" if isinstance(ckpt, dict) and "format" in ckpt \
            else f"a {type(ckpt).__name__} without a '{ORIGINAL_STATE}' entry"
        raise OriginalCheckpointError(f"{path} is not an original Adapter4Rec checkpoint: it is {what}")
    if not isinstance(ckpt[ORIGINAL_STATE], dict):
        raise OriginalCheckpointError(f"{path}: '{ORIGINAL_STATE}' is a {type(ckpt[ORIGINAL_STATE]).__name__}, "
                                      f"not a state dict")
    return ckpt


def _fit_error(path: Path, mapped: _Mapping, model: nn.Module, state: dict) -> OriginalCheckpointError:
    found = ", ".join(sorted(FAMILY_NAMES[f] for f in _checkpoint_families(state))) or "none recognised"
    item = type(getattr(model, "item_encoder", model)).__name__
    parts = []
    if mapped.unmapped:
        parts.append(f"{len(mapped.unmapped)} checkpoint key(s) with no place in the model: "
                     f"{', '.join(mapped.unmapped[:8])}")
    if mapped.missing:
        parts.append(f"{len(mapped.missing)} model key(s) without a value: {', '.join(mapped.missing[:8])}")
    return OriginalCheckpointError(
        f"{path} does not fit this model (checkpoint item encoder: {found}; model: {item}; load "
        f"before adding adapters, with the original's num_blocks): " + "; ".join(parts))


def load_original(model: nn.Module, path: Path, contents: dict | None = None) -> dict:
    """Load an original `epoch-N.pt` into `model` (plain, before adapters) with checked strictness.

    Returns {path, loaded (tensors), dropped (original keys dropped on purpose), ignored_entries (optimizer,
    rng states), max_seq_len, embedding_dim, num_blocks}. num_heads and arch are not in the file: the
    caller must build the model with the original's (2 heads; SASRec or CPC). `contents`: the file as
    already read (weights_only) by the caller, so a large checkpoint is not read twice."""
    ckpt = read_original(Path(path)) if contents is None else checked_original(contents, Path(path))
    state = ckpt[ORIGINAL_STATE]
    try:
        mapped = _map(state, model)
    except OriginalCheckpointError as err:
        raise OriginalCheckpointError(f"{path}: {err}") from None
    if mapped.unmapped or mapped.missing:
        raise _fit_error(Path(path), mapped, model, state)
    result = model.load_state_dict(mapped.state, strict=False)
    # strict=False only so the data-derived buffers keep their values; anything else is a bug in _map
    assert not result.unexpected_keys and set(result.missing_keys) <= _data_derived_buffers(model), result
    position = mapped.state.get("user_encoder.position.weight")  # (L, d): the checkpoint's L and d
    blocks = {k.split(".")[2] for k in mapped.state if k.startswith("user_encoder.blocks.")}
    return {"path": str(path), "loaded": len(mapped.state), "dropped": sorted(mapped.dropped),
            "ignored_entries": sorted(k for k in ckpt if k != ORIGINAL_STATE),
            "max_seq_len": None if position is None else position.shape[0],
            "embedding_dim": None if position is None else position.shape[1], "num_blocks": len(blocks)}
