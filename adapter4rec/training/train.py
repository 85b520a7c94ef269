"""One training loop for every stage: source pretraining, full fine-tuning, PEFT transfer (adapters, LoRA,
prompts, side networks, only the trainable parameters saved), LP-FT, training from scratch, and zero-shot
evaluation of a source model.

run(cfg): the run folder claimed and checked (run/folder.py) -> data and model assembled (assemble.build_run:
source checkpoint, warm start, adapters, what trains) -> DDP -> epochs of (train, validate, keep best) -> test
the best checkpoint (run/results.py) -> results.json. Each run writes its own directory: config.json,
environment.json (versions, git commit), log.txt, metrics.jsonl (one line per epoch), best.pt, epoch-N.pt (the
newest keep_last epochs), last.pt (resume state), results.json.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader, RandomSampler, TensorDataset, WeightedRandomSampler

from adapter4rec import dist
from adapter4rec.checkpoint import checkpoint_of, epoch_path, prune_epoch_checkpoints, save_atomic
from adapter4rec.config import Config
from adapter4rec.config.flags import suggest
from adapter4rec.data.pool import domain_weights
from adapter4rec.data.shards import ShardedBatches
from adapter4rec.evaluate import autocast, resolve_precision, validate
from adapter4rec.progress import duration, progress_bar
from adapter4rec.run.folder import claim, commit, decide, trim_metrics
from adapter4rec.run.record import attach_log_file, environment, run_dir_of, seed_training_stream, setup_logging
from adapter4rec.run.results import finish
from adapter4rec.run.resume import Progress, StopSignals, find_resume, restore, rng_state, save_last, set_rng_state
from adapter4rec.training.assemble import build_run, check_inputs_outside
from adapter4rec.training.optim import apply_schedule, build_optimizer
from adapter4rec.training.tb import Board

log = logging.getLogger("adapter4rec")
MAX_SKIPS_IN_A_ROW = 20  # nonfinite=skip: this many consecutive non-finite updates end the run


def train_one_epoch(model, ddp_model, loader, optimizer, scaler, cfg, device, progress, negatives, resume_rng,
                    checkpoint, stop: StopSignals) -> float:
    """One epoch from batch `progress.step` on (earlier batches of a resumed epoch are skipped, not rerun).

    `resume_rng` (a resumed run only) is applied after the skip, so the remaining batches see exactly the
    random numbers of the interrupted run; `checkpoint()` writes last.pt every save_every_steps batches."""
    model.train()
    limit = min(cfg.max_steps_per_epoch or len(loader), len(loader))
    bar = progress_bar(limit, f"epoch {progress.epoch} ({progress.epoch + 1}/{cfg.epochs})", cfg.progress,
                       initial=progress.step)
    # the run's training steps still to come after this epoch's (validation not counted; patience may end it sooner)
    later_steps, clock, first_step = (cfg.epochs - progress.epoch - 1) * limit, time.time(), progress.step
    # Creating the iterator draws one number from the global RNG; the saved state is from before that draw
    # when the run stopped at an epoch boundary, and from after it (mid-epoch) otherwise.
    if resume_rng is not None and progress.step == 0:
        set_rng_state(resume_rng, negatives)
    batches = iter(loader)
    for _ in range(progress.step):
        next(batches)
    if resume_rng is not None and progress.step > 0:
        set_rng_state(resume_rng, negatives)
    for step in range(progress.step, limit):
        (seqs,) = next(batches)
        negs = model.draw_negatives(seqs, negatives)
        apply_schedule(optimizer, cfg, progress.epoch * limit + step, cfg.epochs * limit)
        loss, fault = train_step(model, ddp_model, seqs.to(device), negs, optimizer, scaler, cfg, device)
        if fault:
            skip_or_stop(fault, cfg, progress, step)
        else:
            progress.loss_sum += loss
            progress.skipped_in_a_row = 0
        progress.step = step + 1
        bar.update(1)
        rate = (progress.step - first_step) / max(time.time() - clock, 1e-9)
        bar.set_postfix(loss=f"{progress.loss_sum / max(progress.step - progress.skipped, 1):.4f}",
                        run_left=duration((limit - progress.step + later_steps) / rate))
        if cfg.save_every_steps and progress.step % cfg.save_every_steps == 0 and progress.step < limit:
            checkpoint()
        if stop.requested() and progress.step < limit:
            checkpoint()
            stop.stop(f"after epoch {progress.epoch} step {progress.step}")
    bar.close()
    return progress.loss_sum / max(progress.step - progress.skipped, 1)  # mean over the updates made


def train_step(model, ddp_model, seqs, negs, optimizer, scaler, cfg, device) -> tuple[float, str | None]:
    """One update. Returns (the whole global batch's loss, None), or (loss, what was non-finite) when the update
    was NOT made (then parameters and optimizer state are untouched): a NaN/inf loss on any rank, checked before
    backward so no rank enters DDP's gradient all-reduce alone, or a NaN/inf gradient norm, checked before the
    step so one bad batch cannot turn every weight into NaN. With fp16 the grad scaler owns inf gradients: it
    skips such a step itself and lowers the loss scale (the normal dynamic-scaling path, not counted)."""
    with autocast(cfg, device):
        loss = ddp_model(seqs, negs)
    ranks, whole_batch = dist.loss_over_ranks(loss)  # the logged loss: the whole batch's, not this rank's share
    if ranks:
        where = f" on {ranks} of {dist.world_size()} processes (here {loss.item()})" if dist.world_size() > 1 \
            else f" {loss.item()}"
        return loss.item(), f"non-finite loss{where}"
    optimizer.zero_grad(set_to_none=True)
    scaler.scale(loss).backward()
    if scaler.is_enabled():
        if cfg.grad_clip > 0:
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
    else:
        norm = (torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip) if cfg.grad_clip > 0 else
                torch.nn.utils.get_total_norm([p.grad for p in model.parameters() if p.grad is not None]))
        if dist.nonfinite_ranks(norm):
            # no optimizer.step: AdamW would otherwise still decay the weights and advance its step count
            optimizer.zero_grad(set_to_none=True)
            return whole_batch, f"non-finite gradient norm {norm.item()}"
    scaler.step(optimizer)
    # parameter constraints (a learned temperature's cap) hold after every step; when fp16's scaler skipped the
    # step, the parameters are unchanged and this is a no-op
    model.after_step()
    scaler.update()
    return whole_batch, None


def skip_or_stop(fault: str, cfg: Config, progress: Progress, step: int) -> None:
    """nonfinite=stop: raise (nothing is saved after the fault, so best.pt / last.pt stay as they were);
    skip: count the batch and warn. Every rank gets here together (the fault was all-reduced)."""
    if cfg.nonfinite == "stop":
        raise FloatingPointError(f"{fault} at epoch {progress.epoch} step {step}; stopped (nonfinite=stop). "
                                 f"The last good checkpoints (best.pt, last.pt) are left untouched: start the "
                                 f"run again with nonfinite=skip to skip such batches, or lower the learning rate")
    progress.skipped += 1
    progress.skipped_total += 1
    progress.skipped_in_a_row += 1
    if progress.skipped_in_a_row >= MAX_SKIPS_IN_A_ROW:
        raise FloatingPointError(f"{fault} at epoch {progress.epoch} step {step}: {progress.skipped_in_a_row} "
                                 f"updates in a row were skipped (nonfinite=skip stops there: the run has "
                                 f"diverged, it is not meeting a rare bad batch); lower the learning rate")
    if dist.is_main():
        log.warning("%s at epoch %d step %d: update skipped (nonfinite=skip; %d skipped in this epoch)", fault,
                    progress.epoch, step, progress.skipped)


def fit(preset: str | None = None, **settings) -> dict:
    """Train and test one run from Python, on the code path of run.py and the launchers: `settings` are Config's
    keys (run.py's --key=value) over Config's defaults, or over launcher `preset`'s recipe (e.g. "frozen": the
    settings and run name Downstream/Text/script/frozen.py gives its run; config/presets.py); returns the results
    (as results.json). An unknown key raises TypeError naming the closest one; a bad value or preset ValueError,
    as run.py's one-line refusal says."""
    from adapter4rec.config.presets import preset as recipe

    if preset is not None:
        settings = {**recipe(preset, tuple(settings)), **settings}
    kinds = {f.name: type(f.default) for f in dataclasses.fields(Config)}
    unknown = sorted(set(settings) - set(kinds))
    if unknown:
        raise TypeError("fit: unknown setting(s): " + ", ".join(f"{k!r}{suggest('--' + k, kinds)}" for k in unknown))
    return run(Config(**settings).validate())


@dist.record_errors()
def run(cfg: Config) -> dict:
    """Train and evaluate one configuration; returns the results dict (also written to results.json)."""
    device = dist.setup(cfg.device)
    try:
        cfg, precision_note = resolve_precision(cfg, device)
        run_dir = run_dir_of(cfg)
        board = Board(cfg, run_dir)  # tensorboard=true without the package stops here, before any work
        setup_logging()
        if precision_note:
            (log.warning if cfg.precision == "bf16" else log.info)(precision_note)
        with claim(run_dir):  # this process owns the folder until it returns
            return _run(cfg, device, run_dir, board)
    finally:
        dist.cleanup()


def _run(cfg: Config, device: torch.device, run_dir: Path, board: Board) -> dict:
    """Every check (folder, data, checkpoints) before the folder is written; then train, test, results.json."""
    if cfg.precision == "fp16" and device.type != "cuda":
        raise SystemExit("adapter4rec: precision=fp16 needs a CUDA device; use bf16 on CPU")
    log.info("run %s on %s, world size %d", run_dir, device, dist.world_size())
    verdict = decide(run_dir, cfg)
    if verdict.action == "done":
        log.info("run %s finished before with these settings (test %s); nothing to do (overwrite=true trains it "
                 "again)", run_dir, " ".join(f"{k}={v:.4f}" for k, v in verdict.results["test"].items() if "@" in k))
        return verdict.results
    check_inputs_outside(cfg, run_dir)
    data, model = build_run(cfg, device)  # seeded alike on every rank; per-rank streams below
    seed_training_stream(cfg.seed, dist.rank())  # dropout: each rank its own draws
    if cfg.zero_shot:
        commit(run_dir, cfg, verdict, environment())
        attach_log_file(run_dir)
        return zero_shot(model, data, cfg, device, run_dir)
    ddp_model = dist.wrap_ddp(model, device)
    optimizer = build_optimizer(model, cfg)
    scaler = torch.amp.GradScaler(device.type, enabled=cfg.precision == "fp16")

    loader, generators = make_loader(data.split.train, cfg, data.domains)
    negatives = torch.Generator().manual_seed(cfg.seed + dist.rank())  # one negative-sampling stream per rank
    progress, resume_rng = Progress(), None
    # overwrite with resume=auto starts afresh: the folder's own last.pt belongs to the run being replaced
    ckpt = None if verdict.action == "overwrite" and cfg.resume == "auto" else find_resume(run_dir, cfg)
    if ckpt is not None:
        progress, resume_rng = restore(ckpt, model, optimizer, scaler, negatives)
    commit(run_dir, cfg, verdict, environment())  # every check passed: the folder is this run's now
    attach_log_file(run_dir)
    if ckpt is not None:
        trim_metrics(run_dir, progress.epoch)  # drop lines of epochs the resumed run does again
    started = time.time() - progress.seconds
    with StopSignals() as stop:  # SIGTERM / Ctrl-C: finish the step, write last.pt, exit
        while progress.epoch < cfg.epochs and not progress.stopped_early:
            if isinstance(loader.batch_sampler, ShardedBatches):
                loader.batch_sampler.set_epoch(progress.epoch)
            if resume_rng is not None and resume_rng["sampler_epoch"] is not None:
                for gen, state in zip(generators, resume_rng["sampler_epoch"]):
                    gen.set_state(state)  # this epoch's batch order, as the interrupted run had it
            epoch_start = [gen.get_state() for gen in generators]

            def checkpoint():
                progress.seconds = time.time() - started
                save_last(run_dir / "last.pt", model, optimizer, scaler, cfg, progress,
                          rng_state(negatives, epoch_start))
            loss = train_one_epoch(model, ddp_model, loader, optimizer, scaler, cfg, device, progress, negatives,
                                   resume_rng, checkpoint, stop)
            resume_rng = None
            progress.stopped_early = end_of_epoch(model, data, cfg, device, run_dir, progress, loss,
                                                  time.time() - started, board)
            epoch_start = [gen.get_state() for gen in generators]  # = the next epoch's start
            checkpoint()  # also after early stopping: a kill while testing then resumes into testing
            if progress.stopped_early:
                break
            if stop.requested():  # a signal during the epoch's last step or its evaluation
                stop.stop(f"at the end of epoch {progress.epoch - 1}")
        if stop.requested():  # early stopping or the last epoch: last.pt (if any) stands, testing is left to the rerun
            stop.stop("before testing")
    board.close()
    dist.barrier()
    return finish(model, data, cfg, device, run_dir, progress, time.time() - started)


def zero_shot(model, data, cfg: Config, device, run_dir: Path) -> dict:
    """No target training: the source model (its backbone, head and user encoder) ranks the target's items as it
    is. Its validation metrics go into best.pt as an epoch's would (epoch -1), then it is tested."""
    valid = validate(model, data.split.valid, cfg, device, "valid")
    if dist.is_main():
        save_atomic(checkpoint_of(model, cfg, epoch=-1, metrics=valid), run_dir / "best.pt")
    log.info("zero-shot: the source model evaluated on the target without training; valid %s",
             " ".join(f"{k}={v:.4f}" for k, v in valid.items() if k in ("hr@10", "ndcg@10")))
    dist.barrier()
    return finish(model, data, cfg, device, run_dir, Progress(best=valid[cfg.select_metric], best_epoch=-1), 0.0)


def make_loader(train: torch.Tensor, cfg: Config, domains=None) -> tuple[DataLoader, list[torch.Generator]]:
    """Training windows in a seeded random order; under DDP each rank gets its share of every global batch
    (data/shards.py: each window once per epoch over all ranks; the order depends only on seed and epoch). A
    pool with domain_sampling=smoothed draws as many windows per epoch, with replacement, under the smoothed
    domain mix (data/pool.domain_weights). Returns the loader and the generators that decide each epoch's order
    in a single process (saved in last.pt)."""
    train_set = TensorDataset(train)
    weights = None
    if domains is not None and cfg.domain_sampling == "smoothed":
        weights, share = domain_weights(train, domains, cfg.domain_temperature)
        log.info("domain mix (smoothed, temperature %g): %s", cfg.domain_temperature,
                 ", ".join(f"{name} {p:.3f}" for name, p in zip(domains.names, share)))
    if dist.world_size() > 1:
        batches = ShardedBatches(len(train_set), cfg.batch_size, dist.rank(), dist.world_size(), cfg.seed, weights)
        return DataLoader(train_set, batch_sampler=batches, num_workers=cfg.num_workers), []
    generator = torch.Generator().manual_seed(cfg.seed)
    sampler = RandomSampler(train_set, generator=generator) if weights is None else \
        WeightedRandomSampler(weights, len(train_set), replacement=True, generator=generator)
    return DataLoader(train_set, batch_size=cfg.batch_size, sampler=sampler, num_workers=cfg.num_workers), [generator]


def end_of_epoch(model, data, cfg: Config, device, run_dir: Path, progress: Progress, loss: float,
                 seconds: float, board: Board | None = None) -> bool:
    """Validate, keep the best checkpoint, log the epoch, advance `progress`; True when early stopping."""
    valid = validate(model, data.split.valid, cfg, device, "valid")
    epoch, improved = progress.epoch, valid[cfg.select_metric] > progress.best
    if improved:
        progress.best, progress.best_epoch, progress.stale = valid[cfg.select_metric], epoch, 0
    else:
        progress.stale += 1
    if dist.is_main():
        save_epoch_checkpoints(checkpoint_of(model, cfg, epoch=epoch, metrics=valid), cfg, run_dir, epoch, improved)
        with open(run_dir / "metrics.jsonl", "a" if epoch else "w") as handle:
            handle.write(json.dumps({"epoch": epoch, "loss": loss, "seconds": round(seconds, 1),
                                     "nonfinite_skipped": progress.skipped, **valid}) + "\n")
        if board is not None:
            board.epoch(epoch, loss, valid)
    log.info("epoch %d loss %.4f valid %s %s", epoch, loss,
             " ".join(f"{k}={v:.4f}" for k, v in valid.items() if "@" in k), "(best)" if improved else "")
    if valid.get("domains"):  # a pool: the mean over its domains selects; each domain's own number
        log.info("epoch %d valid ndcg@10 by domain: %s", epoch,
                 ", ".join(f"{name} {m['ndcg@10']:.4f}" for name, m in valid["domains"].items()))
    if valid.get("nonfinite_users"):  # ranked last (metrics 0), so such an epoch is never the best by accident
        log.warning("epoch %d: %d of %d validation users got a non-finite score (NaN/inf model output); they are "
                    "ranked last", epoch, valid["nonfinite_users"], valid["users"])
    if valid.get("nonfinite_items"):  # ranked above every target: they lower the metrics, never raise them
        log.warning("epoch %d: %d item(s) have a non-finite vector (NaN/inf model output); they are ranked above "
                    "every target", epoch, valid["nonfinite_items"])
    progress.epoch, progress.step, progress.loss_sum, progress.skipped = epoch + 1, 0, 0.0, 0
    if cfg.patience and progress.stale >= cfg.patience:
        log.info("early stop: no improvement of %s for %d epochs", cfg.select_metric, progress.stale)
        return True
    return False


def save_epoch_checkpoints(ckpt: dict, cfg: Config, run_dir: Path, epoch: int, improved: bool) -> None:
    """Rank 0: best.pt when the epoch improved; epoch-N.pt, then (only once it is written) delete the files
    of epochs older than the newest keep_last. keep_last=0 writes and deletes no epoch file."""
    if improved:
        save_atomic(ckpt, run_dir / "best.pt")
    if cfg.keep_last:
        save_atomic(ckpt, epoch_path(run_dir, epoch))
        prune_epoch_checkpoints(run_dir, epoch, cfg.keep_last)
