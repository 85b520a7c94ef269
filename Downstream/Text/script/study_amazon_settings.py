"""How the Amazon study's settings were chosen: variants of the cheap frozen-features model on Scientific, compared
on VALIDATION NDCG@10 (the selection metric; the test columns are printed once, for the record).

Every `settings-*` run: frozen MiniLM (every item's state cached) under a trained head + SASRec, no source, early
stopping. Variants: scoring (dot / cosine, tau 0.07), item pooling (CLS / mean), the token budget (32 / 64 title
tokens), and the loss: full-catalogue softmax against the in-batch softmax with each sampling correction
(multiplicity, popularity = the correction this project used before, inclusion). The `settings-id-*` runs vary
the study's ID-SASRec row (history length, width, learning rate, batch size, bf16 or fp32, initial weights;
RecBole's defaults are L = 50, d = 64, lr 1e-3, batch 2048, normal(0, 0.02)), the `settings-side-*` runs its
side network + head + user encoder row (learning rates, dropout, side_pooling), the `settings-fused-*` runs its
fused (ID + text) row (the fusion, ID dropout, a whitening MoE head). Data: as study_amazon.py
(converted there). Extra arguments go to every run; `--jobs=2` runs two at a time (as study_amazon.py);
`--skip_done` continues; `--only=a,b` runs a subset.
"""
import json
import runpy
import sys
from pathlib import Path

from adapter4rec.experiments.launch import JobQueue, split_jobs, sweep
from adapter4rec.experiments.studies import RUNS_DIR, refuse_run_name

STUDY = runpy.run_path(str(Path(__file__).resolve().with_name("study_amazon.py")))  # its settings, not a copy
COMMON, FROZEN, SCIENTIFIC, convert = STUDY["COMMON"], STUDY["FROZEN"], STUDY["SCIENTIFIC"], STUDY["convert"]
# the variants' base: xavier at width 64, a constant learning rate (init 0.02, width 128, then cosine chosen)
ID = dict(STUDY["RUNS"]["amazon-sci-id-sasrec"], init_std=0.0, embedding_dim=64, lr_schedule="constant", epochs=200)
SIDE_HEAD_USER = dict(STUDY["RUNS"]["amazon-sci-side-head-user"], dropout=0.2)  # the variants' base (0.3 chosen)

BASE = dict(FROZEN, max_title_tokens=32)  # the variants are compared at 32 tokens (the study now reads 64)
INBATCH = dict(BASE, loss="inbatch", batch_size=64)
FUSED = STUDY["FUSED"]  # the study's fused row
TWO_STAGE = dict(STUDY["TWO_STAGE"], warm_start="runs/amazon-sci-side-head-user/best.pt")
FUSED_SUM = dict(STUDY["RUNS"]["amazon-sci-side-head-user"], item_tower="fused", item_fusion="sum")
VARIANTS = {  # run name -> its settings over COMMON and the Scientific data
    "settings-softmax-dot-cls": dict(BASE),
    "settings-softmax-cosine": dict(BASE, score="cosine", temperature=0.07),
    "settings-softmax-mean": dict(BASE, item_pooling="mean"),
    "settings-softmax-64-tokens": dict(BASE, max_title_tokens=64),
    "settings-inbatch-multiplicity": dict(INBATCH, inbatch_correction="multiplicity"),
    "settings-inbatch-popularity": dict(INBATCH, inbatch_correction="popularity"),
    "settings-inbatch-inclusion": dict(INBATCH, inbatch_correction="inclusion"),
    "settings-side-head-user-lr-2e-3": dict(SIDE_HEAD_USER, lr=2e-3, item_adapter_lr=2e-3),
    "settings-side-head-user-dropout-0.3": dict(SIDE_HEAD_USER, dropout=0.3),
    "settings-side-head-user-dropout-0.4": dict(SIDE_HEAD_USER, dropout=0.4),
    "settings-side-head-user-both-poolings": dict(SIDE_HEAD_USER, dropout=0.3, side_pooling="both"),
    "settings-side-head-user-dropout-0.3-lr-2e-3": dict(SIDE_HEAD_USER, dropout=0.3, lr=2e-3, item_adapter_lr=2e-3),
    "settings-softmax-64-tokens-init-0.02": dict(BASE, max_title_tokens=64, init_std=0.02),
    "settings-id-lr-2e-3": dict(ID, lr=2e-3),
    "settings-id-fp32": dict(ID, precision="fp32"),
    "settings-id-init-0.02": dict(ID, init_std=0.02),
    # after init 0.02 was chosen, the next variants start from it
    "settings-id-init-0.02-history-50": dict(ID, init_std=0.02, max_seq_len=50),
    "settings-id-init-0.02-width-128": dict(ID, init_std=0.02, embedding_dim=128),
    "settings-id-init-0.02-batch-1024": dict(ID, init_std=0.02, batch_size=1024, lr=2e-3),
    # after width 128 was chosen (the study's row): wider still, and a learning rate that decays to 0 by epoch 30
    "settings-id-init-0.02-width-256": dict(ID, init_std=0.02, embedding_dim=256),
    "settings-id-init-0.02-width-128-cosine-30": dict(ID, init_std=0.02, embedding_dim=128, lr_schedule="cosine",
                                                      epochs=30),
    # the fused row (side + head + user from Office, target IDs added), each variant over its first version (sum,
    # linear head: run as amazon-sci-fused at commit 919c9e9, kept as runs/amazon-sci-fused-sum-linear): how ID
    # and text combine, ID dropout, the whitening MoE head in place of the Office model's linear one
    "settings-fused-concat": dict(FUSED_SUM, item_fusion="concat"),
    "settings-fused-gate": dict(FUSED_SUM, item_fusion="gate"),
    "settings-fused-id-dropout-0.2": dict(FUSED_SUM, id_dropout=0.2),
    "settings-fused-moe-head": dict(FUSED_SUM, item_head="moe"),
    # the ID table overfits (training loss far below the text row's, best epoch earlier): more regularisation
    "settings-fused-dropout-0.5": dict(FUSED_SUM, dropout=0.5),
    "settings-fused-id-dropout-0.5": dict(FUSED_SUM, id_dropout=0.5),
    "settings-fused-moe-head-id-dropout-0.2": dict(FUSED_SUM, item_head="moe", id_dropout=0.2),
    "settings-side-head-user-moe-head": dict(STUDY["RUNS"]["amazon-sci-side-head-user"], item_head="moe"),
    # over the chosen fused row (MoE head, ID dropout 0.2): MISSRec's cosine score at tau 0.07, and weight decay
    "settings-fused-cosine": dict(FUSED, score="cosine", temperature=0.07),
    "settings-fused-weight-decay-0.1": dict(FUSED, weight_decay=0.1),
    # in two stages: the trained text row (seed 12345) with the IDs added at zero (study_amazon.py's TWO_STAGE)
    "settings-fused-two-stage": dict(TWO_STAGE),
    "settings-fused-two-stage-id-dropout-0.2": dict(TWO_STAGE, id_dropout=0.2),
    # the text row's width without a source (a wider row needs a wider source): the field's best use d = 300
    "settings-side-head-user-scratch-width-128": dict(STUDY["RUNS"]["amazon-sci-side-head-user-scratch"],
                                                      embedding_dim=128),
    "settings-side-head-user-scratch-width-256": dict(STUDY["RUNS"]["amazon-sci-side-head-user-scratch"],
                                                      embedding_dim=256),
}


def table(names: list[str]) -> str:
    lines = ["| run | best epoch | valid NDCG@10 | test HR@10 | test NDCG@10 | unmasked HR@10 | unmasked NDCG@10 | "
             "train s |", "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name in names:
        path = RUNS_DIR / name / "results.json"
        if not path.is_file():
            continue
        res = json.loads(path.read_text())
        test, unmasked = res["test"], res.get("test_no_mask") or {}
        lines.append(f"| {name} | {res['best_epoch']} | {res['valid_ndcg@10']:.4f} | {test['hr@10']:.4f} | "
                     f"{test['ndcg@10']:.4f} | {unmasked.get('hr@10', float('nan')):.4f} | "
                     f"{unmasked.get('ndcg@10', float('nan')):.4f} | {res['train_seconds']:.0f} |")
    return "\n".join(lines)


if __name__ == "__main__":
    extra, jobs = split_jobs(sys.argv[1:])
    refuse_run_name(extra, "study_amazon_settings.py")
    only = [a.split("=", 1)[1].split(",") for a in extra if a.startswith("--only=")]
    names = only[-1] if only else list(VARIANTS)
    if set(names) - set(VARIANTS):
        raise SystemExit(f"study_amazon_settings.py: unknown run(s) {sorted(set(names) - set(VARIANTS))}; "
                         f"known: {', '.join(VARIANTS)}")
    extra = [a for a in extra if not a.startswith("--only=")]
    dry = "--dry_run" in extra or "--dry-run" in extra
    if not dry:
        convert()
    queue = JobQueue(jobs, RUNS_DIR / "launch-logs") if jobs > 1 else None
    for name in names:
        sweep(__file__, {**COMMON, "dataset": str(SCIENTIFIC), **VARIANTS[name]}, {}, name=name, argv=extra,
              queue=queue)
    if queue is not None:
        queue.wait()
    if not dry:
        text = table(list(VARIANTS))
        (RUNS_DIR / "report_amazon_settings.md").write_text(text + "\n")
        print(text)
