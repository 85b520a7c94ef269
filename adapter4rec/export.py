"""Export a run's best model as one self-contained checkpoint (every weight, adapters included).

    python -m adapter4rec.export runs/adapter_houlsby [--out runs/adapter_houlsby/full.pt]

A PEFT run's best.pt stores only the trainable parameters and names its source checkpoint; this rebuilds
the model exactly as the run did (data, source checkpoint, adapters), loads the adapters and writes the
full state dict ("kind": "full"), which needs no source checkpoint to load.
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from adapter4rec.adapters.methods import add_adapters
from adapter4rec.adapters.trainable import set_trainable
from adapter4rec.build import build_model, load_data
from adapter4rec.checkpoint import FORMAT, load_run_weights, load_source, read_checkpoint, save_atomic
from adapter4rec.config import from_dict


def export(run_dir: Path, out: Path) -> Path:
    ckpt = read_checkpoint(run_dir / "best.pt")
    cfg = from_dict(ckpt["config"])
    model = build_model(cfg, load_data(cfg))
    if ckpt.get("kind") == "trainable" and cfg.source_checkpoint:
        load_source(model, cfg.resolve(cfg.source_checkpoint), dataclasses.asdict(cfg))
    add_adapters(model, cfg)
    set_trainable(model, cfg)
    load_run_weights(model, ckpt)
    save_atomic({**ckpt, "format": FORMAT, "kind": "full", "model": model.state_dict()}, out)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run_dir", type=Path)
    parser.add_argument("--out", type=Path, help="default: <run_dir>/full.pt")
    opts = parser.parse_args(argv)
    out = export(opts.run_dir, opts.out or opts.run_dir / "full.pt")
    print(f"wrote {out} ({out.stat().st_size / 2**20:.1f} MB)")


if __name__ == "__main__":
    main()
