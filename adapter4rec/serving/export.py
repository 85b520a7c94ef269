"""Export a run's best model as one self-contained checkpoint (every weight, adapters included).

    python -m adapter4rec export runs/adapter_houlsby [--out runs/adapter_houlsby/full.pt] [--device cpu]
    python -m adapter4rec export runs/adapter_houlsby --format safetensors     # -> runs/adapter_houlsby/full.safetensors

A PEFT run's best.pt stores only the trainable parameters and names its source checkpoint; this rebuilds
the model exactly as the run did (seed, data, model, source checkpoint, adapters: assemble.build_run, the
same function the run called), loads the adapters and writes the full state dict ("kind": "full"), which needs
no source checkpoint to load. `--format safetensors` (or an --out ending in .safetensors) writes the same
checkpoint as a .safetensors file: the weights without pickle, the rest as JSON metadata (checkpoint/files.py); it loads wherever a checkpoint is read (source_checkpoint, warm_start) and in any
safetensors tool.

The frozen weights of a rebuilt PEFT model are not in best.pt: they come from the source checkpoint (which may
have changed since the run) or, without one, from the seeded random initialisation (which holds only while the
code and data build the model with the same random draws). So before writing, the export recomputes the
validation metrics stored in best.pt and refuses to write a model that does not reproduce them (--no-verify
skips the check).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

import torch

from adapter4rec.checkpoint import EPOCH_FILE, CheckpointError, checkpoint_of, read_checkpoint, save_atomic
from adapter4rec.checkpoint.files import SUFFIX, write_safetensors
from adapter4rec.errors import exit_on_user_error
from adapter4rec.evaluate import validate
from adapter4rec.run.folder import holder_of
from adapter4rec.training.assemble import rebuild_run

log = logging.getLogger("adapter4rec")
# stored vs recomputed validation metric: equal on the run's device; another device or precision (GPU bf16 run,
# CPU fp32 export) moves a few near-tied ranks, a different model moves them all
METRIC_ATOL, METRIC_RTOL = 1e-3, 0.02


RUN_FILES = ("config.json", "environment.json", "results.json", "metrics.jsonl", "log.txt", "best.pt", "last.pt")


def check_export_out(run_dir: Path, out: Path) -> None:
    """Refuse an --out that would destroy a file (a run's own files, anything but an earlier export) or cannot be
    a file, before the model is rebuilt."""
    if out.is_dir():
        raise SystemExit(f"export: --out {out} is a directory; name a file in it, e.g. {out / 'full.pt'}")
    above = next((p for p in out.parents if p.exists()), None)
    if above is not None and not above.is_dir():
        raise SystemExit(f"export: --out {out} lies under {above}, which is a file, not a folder")
    if out.name in RUN_FILES or EPOCH_FILE.fullmatch(out.name):
        raise SystemExit(f"export: --out {out} is the name of a run's own file; choose another (default: "
                         f"{run_dir / 'full.pt'})")
    if out.exists():
        try:
            earlier = read_checkpoint(out) if out.suffix == SUFFIX else \
                torch.load(out, map_location="cpu", weights_only=True, mmap=True)
        except Exception:
            earlier = None
        if not (isinstance(earlier, dict) and earlier.get("kind") == "full" and "model" in earlier):
            raise SystemExit(f"export: --out {out} exists and is not an earlier export; it is left alone: choose "
                             f"another name")


def export(run_dir: Path, out: Path, device: str = "cpu", verify: bool = True) -> Path:
    check_export_out(run_dir, out)
    holder = holder_of(run_dir)
    if holder is not None:
        log.warning("export: %s is still training (%s): its best.pt is the best of the epochs so far", run_dir,
                    holder)
    model, data, cfg, ckpt = rebuild_run(run_dir, device)
    if verify and ckpt.get("kind") == "trainable":
        check_reproduces(model, data, cfg, ckpt, torch.device(device))
    full = {**ckpt, **checkpoint_of(model, cfg, full=True)}
    if out.suffix == SUFFIX:
        write_safetensors(full, out)
    else:
        save_atomic(full, out)
    return out


def check_reproduces(model, data, cfg, ckpt: dict, device: torch.device) -> None:
    """Raise CheckpointError unless the rebuilt model gives the validation metrics best.pt was saved with."""
    stored = {k: v for k, v in ckpt.get("metrics", {}).items() if "@" in k}
    if not stored:
        raise CheckpointError("best.pt holds no validation metrics, so the rebuilt frozen weights cannot be checked; "
                              "rerun with --no-verify to export unchecked")
    if device.type != "cuda" and cfg.precision == "fp16":
        cfg = dataclasses.replace(cfg, precision="fp32")  # fp16 autocast is a CUDA thing (train refuses it too)
    got = validate(model, data.split.valid, cfg, device, "export check")
    off = [f"{k}: stored {v:.4f}, rebuilt {got[k]:.4f}" if k in got else f"{k}: not recomputed"
           for k, v in sorted(stored.items()) if k not in got or abs(got[k] - v) > METRIC_ATOL + METRIC_RTOL * abs(v)]
    if off:
        origin = f"the source checkpoint {cfg.source_checkpoint}" if cfg.source_checkpoint else \
            f"the seeded initialisation (seed {cfg.seed}; no source checkpoint)"
        raise CheckpointError(f"the rebuilt model does not reproduce the run's validation metrics ({'; '.join(off)}). "
                              f"Its frozen weights come from {origin}, which no longer gives the trained run's "
                              f"weights (changed file, data or code?); nothing was written. --no-verify exports "
                              f"anyway")
    drift = max(abs(got[k] - v) for k, v in stored.items())
    if drift:
        log.warning("export: validation metrics reproduced up to %.2g (device or precision differs from the run)",
                    drift)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m adapter4rec export", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="default: <run_dir>/full.pt (full.safetensors with --format "
                                                 "safetensors); a name ending in .safetensors writes that format")
    parser.add_argument("--format", choices=("pt", "safetensors"), default=None,
                        help="pt (torch, the default) or safetensors (weights without pickle, for other tools)")
    parser.add_argument("--device", default="cpu", help="where the model is rebuilt and checked (default cpu)")
    parser.add_argument("--no-verify", action="store_true",
                        help="write without checking that the rebuilt model reproduces the stored validation metrics")
    opts = parser.parse_args(argv)
    out = opts.out or opts.run_dir / ("full.safetensors" if opts.format == "safetensors" else "full.pt")
    if opts.format and out.suffix != (SUFFIX if opts.format == "safetensors" else ".pt"):
        raise SystemExit(f"export: --out {out} does not end in {SUFFIX if opts.format == 'safetensors' else '.pt'}, "
                         f"the suffix of --format {opts.format}")
    out = export(opts.run_dir, out, opts.device, not opts.no_verify)
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB)")


if __name__ == "__main__":
    exit_on_user_error(main)
