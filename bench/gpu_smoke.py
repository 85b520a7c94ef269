"""GPU smoke check (not a test; CI has no GPU): the CUDA paths of training and evaluation on tiny data.

    python bench/gpu_smoke.py [--out DIR] [--parts text,image] [--device cuda]

Runs, on cuda: text pretraining in fp32 / bf16 / fp16 (grad scaler), then every adapter method downstream in
bf16, and checks that evaluating one checkpoint on CPU and on CUDA gives the same metrics (within float
tolerance); images: a tiny ViT pretrained in bf16 and fp16, every adapter downstream in bf16, and a tiny MAE.
Prints one line per run and `N passed, M failed` at the end. `--device cpu` checks the script itself.
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

from adapter4rec.checkpoint import read_checkpoint  # noqa: E402
from adapter4rec.config import parse_args  # noqa: E402
from adapter4rec.data.synthetic.images import generate_images  # noqa: E402
from adapter4rec.data.synthetic.text import generate  # noqa: E402
from adapter4rec.models.vit_init import write_vit_folder  # noqa: E402
from adapter4rec.training.build import build_model, load_data  # noqa: E402
from adapter4rec.training.train import run, validate  # noqa: E402
from tests.conftest import make_tiny_bert, tiny_args  # noqa: E402

ADAPTERS = [dict(adapter="houlsby"), dict(adapter="parallel"), dict(adapter="pfeiffer", tune_layernorm=True),
            dict(adapter="compacter"), dict(adapter="lora"), dict(adapter="kadapter", kadapter_item_heads=2),
            dict(adapter="prompt", adapter_where="item", prompt_tokens=4), dict(adapter="none", tune_bias=True)]


def main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False)
    parser.add_argument("--out", type=Path, default=Path(tempfile.mkdtemp(prefix="a4r-gpu-")))
    parser.add_argument("--parts", default="text,image")
    parser.add_argument("--device", default="cuda")
    opts = parser.parse_args()
    assert opts.device == "cpu" or torch.cuda.is_available(), "no CUDA device"
    common = dict(device=opts.device, epochs=2, item_adapter_size=16, user_adapter_size=8)
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

    if "image" in opts.parts:
        image_part(opts.out, common, attempt, precisions=("bf16", "fp16") if opts.device == "cuda" else ("bf16",))
    if "text" not in opts.parts:
        print(f"{passed} passed, {failed} failed")
        return
    data, bert = opts.out / "data", make_tiny_bert(opts.out / "bert", hidden=64)
    generate(data, seed=11, preset="tiny")
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


def image_part(out: Path, common: dict, attempt, precisions: tuple[str, ...]) -> None:
    """Tiny ViT (and MAE) over the tiny synthetic image data: pretraining, then every adapter downstream."""
    data = out / "image_data"
    generate_images(data, seed=5, preset="tiny")
    image = dict(common, modality="image", max_seq_len=10, cache_dir=str(out / "cache"))
    for name, mae in (("vit", False), ("mae", True)):
        folder = write_vit_folder(out / name, hidden=64, layers=2, heads=2, image_size=32, patch_size=8, mae=mae)
        for precision in precisions if name == "vit" else precisions[:1]:
            attempt(f"image pretrain {name} {precision}", tiny_args(folder, data / "source", out, precision=precision,
                                                                     run_name=f"img-src-{name}-{precision}", **image))
    source = out / f"img-src-vit-{precisions[0]}" / "best.pt"
    for extra in ADAPTERS:
        name = extra["adapter"] if extra["adapter"] != "none" else "bitfit"
        attempt(f"image downstream {name} bf16", tiny_args(out / "vit", data / "target", out, run_name=f"img-tgt-{name}",
                                                            stage="downstream", tune="peft", precision="bf16",
                                                            source_checkpoint=source, **image, **extra))


if __name__ == "__main__":
    main()
