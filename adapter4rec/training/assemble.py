"""A run's model, assembled in one place: seed -> data -> model -> source checkpoint -> warm start -> adapters (and
the warm run's own) -> what trains -> device -> the frozen backbone's cache.

Training, export, recommend and the tests all call build_run, so a rebuilt run draws the same random numbers in
the same order as the run did (a PEFT run's frozen weights without a source checkpoint come from that seeded
initialisation) and no caller repeats the order by hand.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import Callable

import torch

from adapter4rec.adapters.methods import add_adapters
from adapter4rec.adapters.trainable import set_trainable, trainable_summary
from adapter4rec.training.build import Data, build_model, load_data
from adapter4rec.checkpoint import (PINNED_INPUTS, CheckpointError, ForeignCheckpointError, check_pinned,
                                    finish_warm_start, load_run_weights, load_source, load_warm_start, pinned_inputs,
                                    read_checkpoint)
from adapter4rec.config import Config, from_dict
from adapter4rec.data.store import DiskStore
from adapter4rec.evaluate import autocast
from adapter4rec.models.recommender import Recommender
from adapter4rec.run.folder import check_finished
from adapter4rec.run.record import module_seed, seed_everything
from adapter4rec.training.original import is_original_checkpoint, load_original

log = logging.getLogger("adapter4rec")


def build_run(cfg: Config, device: torch.device) -> tuple[Data, Recommender]:
    """(data, model) of a run: seeded, then data, then the model ready to train or evaluate on `device`."""
    seed_everything(cfg.seed, cfg.deterministic)  # same init on every rank; per-rank streams are the caller's
    data = load_data(cfg)
    return data, prepare_model(cfg, data, device)


def rebuild_run(run_dir: Path, device: str = "cpu", cache: bool = False,
                before_build: Callable[[Config], None] | None = None):
    """(model with the run's best weights, data, config, best.pt contents), rebuilt as the run built it.

    Every module draws its initial values from its own stream of the run's seed (run/record.module_seed), so the
    rebuilt model starts where the run's did. The backbone cache is only a speed-up and draws nothing: off for the
    export check (it must see the model itself), on for recommending."""
    ckpt = read_checkpoint(run_dir / "best.pt")
    cfg = from_dict(ckpt["config"])
    check_pinned(ckpt, cfg, run_dir / "best.pt")  # the files it was built over are still the same
    if before_build is not None:  # a caller's refusal from the config alone, before data and caches are built
        before_build(cfg)
    data, model = build_run(dataclasses.replace(cfg, cache_frozen_backbone=cache), torch.device(device))
    load_run_weights(model, ckpt)
    return model.eval(), data, cfg, ckpt


def prepare_model(cfg: Config, data: Data, device: torch.device) -> Recommender:
    """Build the model, load the source checkpoint, add adapters, decide what trains, move it to `device`."""
    model = build_model(cfg, data)
    model.pinned_inputs = pinned_inputs(cfg)  # recorded in every checkpoint (checkpoint.check_pinned)
    source_pending, source_cfg = {}, {}
    if cfg.source_checkpoint:
        check_finished(cfg.resolve(cfg.source_checkpoint), "source_checkpoint", results=False)
        source_cfg, source_pending = load_any_source(model, cfg)
    if cfg.warm_start:  # LP-FT, or target IDs over a trained content model: a finished run on this target
        check_finished(cfg.resolve(cfg.warm_start), "warm_start")
        warm, pending = load_warm_start(model, cfg.resolve(cfg.warm_start), dataclasses.asdict(cfg))
        if cfg.item_tower == "fused" and warm.get("item_tower", "modal") == "modal":
            if cfg.item_fusion == "gate":
                raise CheckpointError(f"{cfg.warm_start}: item_fusion=gate cannot start from the content run's "
                                      f"scores (its gate halves them at init); add target IDs to a trained content "
                                      f"run with item_fusion=sum or concat")
            model.item_encoder.id_fusion.start_from_content()  # IDs added to a trained content model: c + 0
    check_fresh_head(cfg, source_cfg)
    if cfg.zero_shot:  # the source model as it scored: another score would evaluate another model
        differ = [f"source {k}={source_cfg.get(k)!r}, this run {k}={getattr(cfg, k)!r}" for k in
                  ("score", "temperature", "learn_temperature", "item_pooling") if k in source_cfg
                  and source_cfg[k] != getattr(cfg, k) and (k != "temperature" or cfg.score == "cosine")]
        if differ:
            raise CheckpointError(f"{cfg.source_checkpoint}: zero_shot evaluates the source model as it is, and this "
                                  f"run scores otherwise: {'; '.join(differ)}")
    if cfg.zero_shot and cfg.adapter != source_cfg.get("adapter", "none"):
        raise CheckpointError(f"{cfg.source_checkpoint}: zero_shot evaluates the source model as it is, and this run "
                              f"has adapter={cfg.adapter!r} where the source has "
                              f"adapter={source_cfg.get('adapter', 'none')!r} (a new adapter would be untrained)")
    with module_seed(cfg.seed, "adapters"):  # their initial values, whatever else the model holds
        changed = add_adapters(model, cfg)
    if source_pending:  # a PEFT source's adapters (a pool source's side network), now that this run has them
        finish_warm_start(model, source_pending, cfg.resolve(cfg.source_checkpoint), source_cfg)
        log.info("source adapters loaded from %s (%d tensor(s))", cfg.source_checkpoint, len(source_pending))
    if cfg.warm_start:  # the warm run's own adapters (a side network, say), now that this run has added them
        finish_warm_start(model, pending, cfg.resolve(cfg.warm_start), warm)
        log.info("warm start from %s (%d tensor(s) after the adapters)", cfg.warm_start, len(pending))
    for side, names in changed.items():
        log.info("adapter %s in the %s encoder: %d module(s) changed, e.g. %s", cfg.adapter, side, len(names),
                 names[:2])
    set_trainable(model, cfg)
    log.info("%s", trainable_summary(model))
    model.to(device)
    if hasattr(model.item_encoder, "cache_backbone") and cfg.cache_frozen_backbone:
        with autocast(cfg, device):
            cached = model.item_encoder.cache_backbone(DiskStore(cfg.resolve(cfg.cache_dir)),
                                                       side_limit_bytes=int(cfg.side_cache_max_gb * 2**30))
        if cached:
            report = model.item_encoder.cache_report
            log.info("item encoder: %s computed once per item and cached (frozen): %s %s, %.1f MB, built in %.1f s",
                     cached, "reused" if report.get("hit") else "built now", report.get("path"),
                     report.get("bytes", 0) / 2**20, report.get("build_seconds", 0.0))
            data.stats["state_cache"] = {k: report.get(k) for k in ("hit", "bytes", "build_seconds", "path")}
    return model


def check_inputs_outside(cfg: Config, run_dir: Path) -> None:
    """Before a run is trained: the weight files it starts from (source_checkpoint, warm_start) must not lie in
    its own folder (retraining would replace the file it starts from), nor have been built over a file of its
    folder (a cycle: this run retrained from B, B built from this run's old best.pt, leaves B unrebuildable)."""
    own = run_dir.resolve()
    for key in PINNED_INPUTS:
        value = getattr(cfg, key)
        path = cfg.resolve(value).resolve() if value else None
        if path is None or not path.is_file():
            continue  # none, or missing: the loader names it
        if own in path.parents:
            raise CheckpointError(f"{key}={value} lies in this run's own folder {run_dir}: training it again would "
                                  f"replace the file it starts from; start from a copy elsewhere, or name another "
                                  f"run_name")
        try:
            pinned_inputs = read_checkpoint(path).get("inputs", {})
        except ForeignCheckpointError:
            continue  # a checkpoint of the original code: built by nothing of ours, so no cycle; the loader maps it
        for pinned in pinned_inputs.values():
            if own in cfg.resolve(pinned["path"]).resolve().parents:
                raise CheckpointError(f"{key}={value} was built over {pinned['path']}, a file of this run's own "
                                      f"folder: training this run from it is a cycle, and would leave that run "
                                      f"unable to be rebuilt; name another run_name")


def check_fresh_head(cfg: Config, source_cfg: dict) -> None:
    """A source whose item head is of another kind hands over no head (checkpoint.fresh_on_target): this run's
    head starts untrained, so it must train, and zero-shot (which trains nothing) would rank with a random head."""
    if not cfg.source_checkpoint or source_cfg.get("item_head", "linear") == cfg.item_head:
        return
    if cfg.zero_shot or (cfg.tune == "peft" and not cfg.train_head):
        what = "zero_shot=true trains nothing" if cfg.zero_shot else "tune=peft with train_head=false keeps it frozen"
        raise CheckpointError(f"{cfg.source_checkpoint}: the source's item_head={source_cfg.get('item_head', 'linear')!r} "
                              f"does not load into this run's item_head={cfg.item_head!r}, which starts untrained, and "
                              f"{what}: set item_head={source_cfg.get('item_head', 'linear')!r}"
                              f"{'' if cfg.zero_shot else ' or train_head=true'}")


def load_any_source(model: torch.nn.Module, cfg: Config) -> tuple[dict, dict]:
    """Our source checkpoint, or one released with the original code (`epoch-N.pt`, keys mapped). Returns (the
    source's config, its adapter tensors to load once this run has added its adapters)."""
    path = cfg.resolve(cfg.source_checkpoint)
    try:
        source, pending = load_source(model, path, dataclasses.asdict(cfg))
        log.info("loaded source checkpoint %s (source dataset %s)", cfg.source_checkpoint, source.get("dataset"))
        return source, pending
    except ForeignCheckpointError as ours_failed:
        if not is_original_checkpoint(ours_failed.contents):
            raise ours_failed from None
        report = load_original(model, path, ours_failed.contents)  # read once: these files reach ~0.5 GB
        log.info("loaded an ORIGINAL Adapter4Rec checkpoint %s: %d tensors mapped, dropped on purpose %s, ignored "
                 "%s; the file does not record num_heads or the objective: this run uses num_heads=%d arch=%s",
                 path, report["loaded"], report["dropped"][:4], report["ignored_entries"], cfg.num_heads, cfg.arch)
        return {}, {}
