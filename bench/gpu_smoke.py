"""GPU smoke check (not a test; CI has no GPU): the CUDA paths of training and evaluation on tiny data.

    python bench/gpu_smoke.py [--out DIR]

Runs, on cuda: pretraining in fp32 / bf16 / fp16 (grad scaler), then every adapter method downstream in
bf16, and checks that evaluating one checkpoint on CPU and on CUDA gives the same metrics (within float
tolerance). Prints one line per run and `N passed, M failed` at the end.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # for tests.conftest's tiny-model builder when run as a plain script

from adapter4rec.build import build_model, load_data  # noqa: E402
from adapter4rec.checkpoint import read_checkpoint  # noqa: E402
from adapter4rec.config import parse_args  # noqa: E402
from adapter4rec.data.synthetic import generate  # noqa: E402
from adapter4rec.train import run, validate  # noqa: E402
from tests.conftest import make_tiny_bert, tiny_args  # noqa: E402

ADAPTERS = [dict(adapter="houlsby"), dict(adapter="parallel"), dict(adapter="pfeiffer", tune_layernorm=True),
            dict(adapter="compacter"), dict(adapter="lora"), dict(adapter="kadapter", kadapter_item_heads=2),
            dict(adapter="prompt", adapter_where="item", prompt_tokens=4), dict(adapter="none", tune_bias=True)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="a4r-gpu-")))
    opts = parser.parse_args()
    assert torch.cuda.is_available(), "no CUDA device"
    data, bert = opts.out / "data", make_tiny_bert(opts.out / "bert", hidden=64)
    generate(data, seed=11, preset="tiny")
    common = dict(device="cuda", epochs=2, item_adapter_size=16, user_adapter_size=8)
    passed, failed = 0, 0

    def attempt(name, argv):
        nonlocal passed, failed
        started = time.time()
        try:
            res = run(parse_args(argv))
            ok = 0.0 <= res["test"]["hr@10"] <= 1.0 and res["test"]["users"] > 0
            print(f"{'PASS' if ok else 'FAIL'} {name}: test hr@10={res['test']['hr@10']:.4f} "
                  f"trainable={res['trainable_params']:,} {time.time() - started:.1f}s", flush=True)
            passed, failed = passed + ok, failed + (not ok)
        except Exception as err:  # report and go on: one line per failing path
            print(f"FAIL {name}: {type(err).__name__}: {err}", flush=True)
            failed += 1

    for precision in ("fp32", "bf16", "fp16"):
        attempt(f"pretrain {precision}", tiny_args(bert, data / "source", opts.out, run_name=f"src-{precision}",
                                                    precision=precision, **common))
    source = opts.out / "src-bf16" / "best.pt"
    for extra in ADAPTERS:
        name = extra["adapter"] if extra["adapter"] != "none" else "bitfit"
        attempt(f"downstream {name} bf16", tiny_args(bert, data / "target", opts.out, run_name=f"tgt-{name}",
                                                      stage="downstream", tune="peft", precision="bf16",
                                                      source_checkpoint=source, **common, **extra))
    # the same checkpoint evaluated on CPU and on CUDA
    cfg = parse_args(tiny_args(bert, data / "source", opts.out, run_name="src-fp32", **common))
    model = build_model(cfg, load_data(cfg))
    model.load_state_dict(read_checkpoint(opts.out / "src-fp32" / "best.pt")["model"])
    split = load_data(cfg).split.test
    on_cpu = validate(model.cpu(), split, cfg, torch.device("cpu"), "cpu")
    on_gpu = validate(model.cuda(), split, cfg, torch.device("cuda"), "gpu")
    same = all(abs(on_cpu[k] - on_gpu[k]) < 2e-3 for k in on_cpu if "@" in k)
    print(f"{'PASS' if same else 'FAIL'} cpu vs cuda evaluation: cpu hr@10={on_cpu['hr@10']:.4f} "
          f"cuda hr@10={on_gpu['hr@10']:.4f}")
    passed, failed = passed + same, failed + (not same)
    print(f"{passed} passed, {failed} failed")


if __name__ == "__main__":
    main()
