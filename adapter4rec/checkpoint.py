"""Checkpoints: atomic writes, and loading with checked keys and shapes.

A checkpoint is a plain dict: {"format", "config" (asdict, plain types), "model" (state dict), "epoch",
"metrics"} — loadable with torch.load(weights_only=True).
"""
from __future__ import annotations

import dataclasses
import errno
import re
import shutil
import warnings
from pathlib import Path

import torch

from adapter4rec.adapters.trainable import trainable_state
from adapter4rec.atomic import atomic_path
from adapter4rec.config import Config
from adapter4rec.data.store import file_checksum
from adapter4rec.errors import UserError

FORMAT = "adapter4rec/1"
DISK_FULL = (errno.ENOSPC, errno.EDQUOT)
EPOCH_FILE = re.compile(r"epoch-(\d+)\.pt")


class CheckpointError(UserError, RuntimeError):
    pass


class ForeignCheckpointError(CheckpointError):
    """A readable torch file that is not in our format (e.g. the original code's `epoch-N.pt`); `contents`
    holds what was read, so a caller that knows the other format need not read the file again."""

    def __init__(self, message: str, contents=None):
        super().__init__(message)
        self.contents = contents


# the files a run reads weights from and does not save itself (a PEFT run's frozen part, a warm start's first
# stage): each is pinned in the run's checkpoints by its checksum, so a finished run is rebuilt from exactly them
PINNED_INPUTS = ("source_checkpoint", "warm_start")


def pinned_inputs(cfg: Config) -> dict:
    """{key: {"path", "checksum"}} of the weight files this run reads (PINNED_INPUTS), as they are now."""
    return {key: {"path": getattr(cfg, key), "checksum": file_checksum(cfg.resolve(getattr(cfg, key)))}
            for key in PINNED_INPUTS if getattr(cfg, key) and cfg.resolve(getattr(cfg, key)).is_file()}  # a missing
    #                                                     one is refused by the loader, naming it


def check_pinned(ckpt: dict, cfg: Config, where: Path) -> None:
    """Refuse (one line naming the file) when a weight file the run was built from has changed, moved or gone
    since: rebuilding the run would silently give another model. Checkpoints written before pinning pass."""
    for key, pinned in ckpt.get("inputs", {}).items():
        path = cfg.resolve(pinned["path"])
        now = file_checksum(path) if path.is_file() else None
        if now != pinned["checksum"]:
            state = "no longer exists" if now is None else "has changed since (retrained or replaced)"
            raise CheckpointError(f"{where} was built over {key}={pinned['path']}, which {state}; the run cannot be "
                                  f"rebuilt as it was trained (its own checkpoint holds only what it trained): "
                                  f"restore that file, or train this run again")


def checkpoint_of(model: torch.nn.Module, cfg: Config, full: bool = False, **fields) -> dict:
    """The one shape of our checkpoints (best.pt, epoch-N.pt, last.pt, an export): format, config, kind and
    weights (a PEFT run's trainable parameters, loaded over its source checkpoint; otherwise, or with full=True,
    every weight), plus `fields` (epoch and metrics; last.pt's optimizer, progress and random state)."""
    kind = "full" if full or cfg.tune != "peft" else "trainable"
    return {"format": FORMAT, "config": dataclasses.asdict(cfg), "kind": kind,
            "source_checkpoint": cfg.source_checkpoint, "inputs": getattr(model, "pinned_inputs", {}),
            "model": model.state_dict() if kind == "full" else trainable_state(model), **fields}


def save_atomic(obj: dict, path: Path) -> None:
    """Write to a temporary file in the same folder, fsync, then rename over `path`: a crash at any moment
    leaves either the old file or the new one, never a torn one. The temporary file is removed on failure;
    a full disk is reported as such (OSError ENOSPC), naming the file and the free space."""
    try:
        with atomic_path(path, fsync=True) as tmp, open(tmp, "wb") as handle:
            torch.save(obj, handle)
    except OSError as err:
        if err.errno in DISK_FULL:
            raise OSError(err.errno, f"disk full (no space left on device) while writing checkpoint {path}; "
                                     f"{_free_space(path.parent)} free in {path.parent}. The previous "
                                     f"{path.name}, if any, is intact: free space, lower keep_last, or set "
                                     f"output_dir elsewhere, then start the run again to resume") from err
        raise


def _free_space(folder: Path) -> str:
    try:
        return f"{shutil.disk_usage(folder).free / 2**20:.1f} MiB"
    except OSError:
        return "unknown space"


def epoch_path(run_dir: Path, epoch: int) -> Path:
    return run_dir / f"epoch-{epoch}.pt"


def prune_epoch_checkpoints(run_dir: Path, newest: int, keep: int) -> list[Path]:
    """Delete the epoch-N.pt files outside the `keep` epochs ending at `newest`; returns what was deleted.

    Call only once epoch-{newest}.pt is written, so a failed save never leaves fewer files than before.
    A number above `newest` can only come from an earlier run in the same folder that was trained afresh
    (a resumed run never gets ahead of its files); it is deleted too, or it would pass for the newest.
    Only our own files go: the original code also names its checkpoints epoch-N.pt, and one placed here
    is left alone."""
    removed = []
    for path in sorted(run_dir.glob("epoch-*.pt")):
        match = EPOCH_FILE.fullmatch(path.name)
        if match and not newest - keep < int(match.group(1)) <= newest and _is_ours(path):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed


def _is_ours(path: Path) -> bool:
    try:  # mmap: the tensors are not read, only the pickled structure
        ckpt = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # unreadable: not provably ours, so not ours to delete
        return False
    return isinstance(ckpt, dict) and ckpt.get("format") == FORMAT


def read_checkpoint(path: Path, expected: str = "best.pt") -> dict:
    """Read one of our checkpoints; every failure is a one-line CheckpointError naming the file. `expected` is the
    file a run folder holds for this use (best.pt; last.pt to resume), suggested when `path` is a folder."""
    if path.is_dir():
        inside = path / expected
        held = sorted(p.name for p in path.glob("*.pt"))[:4]
        raise CheckpointError(f"checkpoint {path} is a folder, not a checkpoint file; " + (
            f"give the file inside it: {inside}" if inside.is_file() else
            f"it holds no {expected} (.pt files there: {', '.join(held) or 'none'}); give a checkpoint file"))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {path} does not exist")
    try:
        with warnings.catch_warnings():  # torch warns about the pickle protocol of a file it then refuses
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for truncated/corrupt zip archives
        raise CheckpointError(f"checkpoint {path} cannot be read ({_load_failure(err, path)}); "
                              f"is it truncated or not a torch checkpoint?") from None
    if not isinstance(ckpt, dict) or "model" not in ckpt or ckpt.get("format") != FORMAT:
        raise ForeignCheckpointError(f"checkpoint {path} is not an adapter4rec checkpoint (format {FORMAT!r} "
                                     f"with a 'model' entry)", ckpt)
    return ckpt


def _load_failure(err: Exception, path: Path) -> str:
    """torch.load's reason in one short line: its multi-line weights_only message is advice about loading the file
    with weights_only=False (arbitrary code), not about the file; its specific part is the unpickler's own error."""
    text = str(err)
    if "WeightsUnpickler error:" in text:
        detail = text.split("WeightsUnpickler error:", 1)[1].strip().splitlines()
        first = detail[0].strip().split(". ")[0].rstrip(".") if detail else "refused"
        text = f"not a weights-only torch file: {first}"
    elif not text.strip():
        text = "the file is empty" if path.stat().st_size == 0 else "the data ends early"
    else:
        text = text.strip().splitlines()[0].split(". ")[0].rstrip(".")
    text = text if len(text) <= 160 else text[:157] + "..."
    return f"{type(err).__name__}: {text}"


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
# a warm run that trained adapters hands them over: this run must add the same ones (their shapes alone cannot
# tell every setting apart, e.g. side_pooling)
ADAPTER_SETTINGS = ("adapter", "adapter_where", "adapter_sublayers", "adapter_layers", "item_adapter_size",
                    "user_adapter_size", "adapter_activation", "user_adapter", "side_layers", "side_pooling",
                    "lora_alpha", "kadapter_item_heads", "kadapter_user_heads", "compacter_n", "prompt_tokens")


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
                              f"export it to a full checkpoint (python -m adapter4rec.export) and warm-start from "
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
