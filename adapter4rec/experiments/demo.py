"""`make demo` / `make demo-cv`: embedded default data -> source pretraining -> target transfer -> results table.

Runs the real launchers with their own constants, so the demo is exactly what a user gets from
`python <launcher>.py`:
  text  (make demo):    Pretraining/Text/script/sm_base_sasrec.py, Downstream/Text/script/finetune.py
  image (make demo-cv): Pretraining/CV/script/sm_vit_sasrec.py, Downstream/CV/script/sm_vit.py and
                        sm_vit_adapter.py (Houlsby), over a small ViT built from a ViTConfig (random start);
                        where `make encoders` placed the real DINOv2 ViT-S/14: sm_dinov2_sasrec.py, sm_dinov2.py
                        and sm_dinov2_side.py over it, frozen (what a CPU affords with a 22M-parameter ViT)
`python -m adapter4rec demo --help` lists the options; the table names the encoder it used.
"""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import dataclass
from pathlib import Path

from adapter4rec.config import REPO_ROOT
from adapter4rec.data.synthetic.images import generate_images
from adapter4rec.data.synthetic.text import generate
from adapter4rec.experiments.studies import launch
from adapter4rec.models.vit_init import write_vit_folder


@dataclass(frozen=True)
class Demo:
    data: Path                   # folder of the generated default data
    generator: object            # generate(out, seed=, preset=)
    scripts: Path                # Pretraining/<X>/script; Downstream/<X>/script is its mirror
    pretrain: str                # launcher (and run) names
    finetune: str
    adapter: str | None          # an adapter launcher run next to full fine-tuning, or None
    encoder: str                 # shown in the table
    domains: tuple[str, str]     # (source, target) descriptions
    methods: tuple[str, str, str] = ("target only (scratch)", "source -> target full fine-tuning",
                                     "source -> target Houlsby adapters")  # table rows: scratch, finetune, adapter


DEMOS = {
    "text": Demo(REPO_ROOT / "Dataset" / "default", generate, REPO_ROOT / "Pretraining" / "Text" / "script",
                 "sm_base_sasrec", "finetune", None, "MiniLM",
                 ("synthetic MIND-format news", "synthetic Adressa-format news")),
    "image": Demo(REPO_ROOT / "Dataset" / "default_cv", generate_images, REPO_ROOT / "Pretraining" / "CV" / "script",
                  "sm_vit_sasrec", "sm_vit", "sm_vit_adapter", "small ViT",
                  ("synthetic HM-format images", "synthetic Amazon-format images")),
    "image-real": Demo(REPO_ROOT / "Dataset" / "default_cv", generate_images,
                       REPO_ROOT / "Pretraining" / "CV" / "script", "sm_dinov2_sasrec", "sm_dinov2", "sm_dinov2_side",
                       "DINOv2 ViT-S/14 (frozen, 112 px)",
                       ("synthetic HM-format images", "synthetic Amazon-format images"),
                       ("target only (scratch)", "source -> target, head + user encoder fine-tuned",
                        "source -> target side network + user Houlsby")),
}
DEMO_VIT = REPO_ROOT / "pretrained_models" / "vit-tiny-demo"
REAL_VIT = REPO_ROOT / "pretrained_models" / "dinov2-vits14-224"  # `make encoders`; placed.json once checked
ENCODERS = {"image": "a small ViT from a ViTConfig, random start (pretrained_models/vit-tiny-demo: 4 layers, "
                     "width 64, 32 px)",
            "image-real": "the real pretrained DINOv2 ViT-S/14 (pretrained_models/dinov2-vits14-224: 12 layers, "
                          "width 384; frozen, at 112 px)"}


def image_demo(vit: str) -> str:
    """The image demo's key: the real ViT where placed (vit=auto) or asked for (real), else the small one."""
    placed = (REAL_VIT / "placed.json").is_file()
    if vit == "real" and not placed:
        raise SystemExit(f"demo: --vit=real needs {REAL_VIT} (run `make encoders`)")
    return "image-real" if placed and vit != "tiny" else "image"


def ensure_data(demo: Demo, seed: int) -> None:
    stamp = demo.data / "generated.json"
    if stamp.is_file() and json.loads(stamp.read_text()).get("seed") == seed:
        return
    summary = demo.generator(demo.data, seed=seed, preset="default")
    stamp.write_text(json.dumps(summary, indent=1))


def ensure_vit() -> None:
    """The demo's image encoder: a randomly initialised small ViT (no weights can be downloaded here); the
    source pretraining is what teaches it to see."""
    if not (DEMO_VIT / "config.json").is_file():
        write_vit_folder(DEMO_VIT)


def results_of(runs: Path, name: str) -> dict:
    return json.loads((runs / name / "results.json").read_text())


def table(runs: Path, demo: Demo) -> str:
    """Markdown table of the target-domain test metrics (plus the source run for reference)."""
    scratch, transfer = results_of(runs, f"{demo.finetune}-scratch"), results_of(runs, demo.finetune)
    source = results_of(runs, demo.pretrain)
    rows = [("Popularity (target train counts)", transfer["popularity_test"], "-", 0, None),
            (f"SASRec + {demo.encoder}, {demo.methods[0]}", scratch["test"], "target", scratch["trainable_params"],
             scratch["train_seconds"]),
            (f"SASRec + {demo.encoder}, {demo.methods[1]}", transfer["test"], "source+target",
             transfer["trainable_params"], transfer["train_seconds"])]
    if demo.adapter:
        adapted = results_of(runs, demo.adapter)
        rows.append((f"SASRec + {demo.encoder}, {demo.methods[2]}", adapted["test"], "source+target",
                     adapted["trainable_params"], adapted["train_seconds"]))
    lines = [f"Target domain ({demo.domains[1]}), {transfer['data']['test_users']} test users, "
             f"{transfer['data']['items']} items. Protocol: {transfer['protocol']}.", "",
             "| method | trained on | trainable params | HR@10 | NDCG@10 | HR@20 | NDCG@20 | train s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, m, data, params, secs in rows:
        lines.append(f"| {name} | {data} | {params:,} | {m['hr@10']:.4f} | {m['ndcg@10']:.4f} | {m['hr@20']:.4f} | "
                     f"{m['ndcg@20']:.4f} | {'-' if secs is None else f'{secs:.0f}'} |")
    lines += ["", f"Source pretraining ({demo.domains[0]}, {source['data']['test_users']} test users): "
              f"test HR@10 {source['test']['hr@10']:.4f}, NDCG@10 {source['test']['ndcg@10']:.4f} "
              f"(popularity HR@10 {source['popularity_test']['hr@10']:.4f}), {source['train_seconds']:.0f} s."]
    return "\n".join(lines)


def stages(demo: Demo) -> list[tuple[str, Path, list[str]]]:
    """(what, launcher, its extra arguments) of every run, in order."""
    downstream = demo.scripts.parent.parent.parent / "Downstream" / demo.scripts.parent.name / "script"
    out = [("source pretraining", demo.scripts / f"{demo.pretrain}.py", []),
           (demo.methods[1], downstream / f"{demo.finetune}.py", []),
           (demo.methods[0], downstream / f"{demo.finetune}.py",
            ["--source_checkpoint=", f"--run_name={demo.finetune}-scratch"])]
    if demo.adapter:
        out.append((demo.methods[2], downstream / f"{demo.adapter}.py", []))
    return out


def run_demo(demo: Demo, seed: int) -> None:
    ensure_data(demo, seed)
    todo = stages(demo)
    for i, (what, launcher, extra) in enumerate(todo, 1):
        print(f"\n=== demo stage {i}/{len(todo)}: {what} ({launcher.stem}.py {' '.join(extra)}) ===", flush=True)
        launch(launcher, extra, [])


def run_names(demo: Demo) -> list[str]:
    return [demo.pretrain, demo.finetune, f"{demo.finetune}-scratch"] + ([demo.adapter] if demo.adapter else [])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m adapter4rec demo", description=__doc__, allow_abbrev=False,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--modality", choices=("text", "image"), default="text", help="text (make demo) or image "
                        "(make demo-cv)")
    parser.add_argument("--seed", type=int, default=2024, help="seed of the synthetic data")
    parser.add_argument("--vit", choices=("auto", "real", "tiny"), default="auto", help="image demo's encoder: "
                        "auto = the real DINOv2 ViT-S/14 where `make encoders` placed it, else the small random ViT")
    parser.add_argument("--table_only", action="store_true", help="print the table of existing runs")
    opts = parser.parse_args(argv)
    key = image_demo(opts.vit) if opts.modality == "image" else opts.modality
    demo, runs = DEMOS[key], REPO_ROOT / "runs"
    started = time.time()
    if key in ENCODERS:
        print(f"demo: image item encoder: {ENCODERS[key]}", flush=True)
    if not opts.table_only:
        if key == "image":
            ensure_vit()
        run_demo(demo, opts.seed)
    text = table(runs, demo)
    if key in ENCODERS:  # the saved table says which ViT made it
        text = f"Image item encoder: {ENCODERS[key]}.\n\n{text}"
    out = runs / ("demo_results.md" if opts.modality == "text" else "demo_cv_results.md")
    out.write_text(text + "\n")
    print("\n" + text)
    if not opts.table_only:
        # the runs' own training time counts every earlier, interrupted start too (it is saved in last.pt)
        trained = sum(results_of(runs, name)["train_seconds"] for name in run_names(demo))
        print(f"\ndemo finished: {time.time() - started:.0f} s in this start; the runs trained {trained:.0f} s in all "
              f"(over resumes, without data and cache set-up); table saved to {out}")


if __name__ == "__main__":
    main()
