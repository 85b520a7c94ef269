"""Study on real data: pretrain on Amazon Office Products, transfer to Amazon Scientific (text only).

The data is NOT shipped: it is read from ../shared/datasets (next to the repository) when present, or from
SHARED below, and converted once with Dataset/convert.py into Dataset/amazon/{office,scientific}/ (git-ignored).
Origin: Amazon Review Data 2018 (McAuley lab), 5-core; Office in the MiniOneRec preprocessing, Scientific in
the UniSRec preprocessing (item text = title. categories. brand.).

Runs (every one early-stopped on validation NDCG@10, tested once; history masked, and the same checkpoint also
tested unmasked, the protocol of the published numbers):
  source   SASRec + MiniLM trained end to end on Office.
  beyond   the side row with the target's item IDs fused in (from Office and without it), trained at once or in
           two stages (the IDs added to each seed's trained side row); zero-shot (the Office model on Scientific
           without training); the cold-start study (10% of items never trained: ID, text, fused, fused two-stage)
  target   ID-SASRec; frozen MiniLM features under a trained head + SASRec, from scratch and from the Office model
           (the backbone state of every item is cached, so these train in minutes); and the paper's question
           (backbone on the backward path every step): text SASRec from scratch, full fine-tuning, Houlsby, LoRA,
           each as LP-FT (warm_start: from the frozen-features model at their 32-token budget, trained first);
           and decoupled PEFT: a side network over cached layer states, alone (with user adapters, as Houlsby
           trains) and with the head and user encoder trained.
Settings chosen on validation (docs/real_data.md): full-catalogue softmax where the item table is cheap (ID and
cached frozen backbones), the in-batch softmax with the multiplicity correction where the backbone trains, every
training window (`train_windows=all`); 32 title tokens where the backbone trains, 64 where it runs once per item.
Extra arguments are passed to every run (e.g. `--epochs=1` for a try-out); `--jobs=2` runs two at a time, each
with half the CPU threads, a run after the runs it starts from (launch.JobQueue; output in runs/launch-logs/);
`--skip_done` continues an interrupted study; `--only=name,name` runs a subset (the report covers the runs that
exist; a finished source run is reused unless it is named there); `--seeds 1,2` repeats the chosen target runs with those seeds (NAME-seed1, ...) from the one source run,
and the report pools them with NAME (seed 12345) into mean ± std.
"""
import subprocess
import sys
from pathlib import Path

from adapter4rec.experiments.launch import SEED_SUFFIX, JobQueue, split_jobs, split_seeds, sweep
from adapter4rec.experiments.studies import RUNS_DIR, report, select_runs, sources_to_start

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared" / "datasets"
OFFICE, SCIENTIFIC = ROOT / "Dataset" / "amazon" / "office", ROOT / "Dataset" / "amazon" / "scientific"
PRETRAIN_RUN = ROOT / "Pretraining" / "Text" / "run.py"
SOURCE_NAME = "amazon-office-sasrec"
FROM_SOURCE = f"runs/{SOURCE_NAME}/best.pt"
COMMON = dict(item_encoder="all-MiniLM-L6-v2", max_seq_len=20, embedding_dim=64, precision="bf16",
              max_title_tokens=32, train_windows="all", seed=12345, save_every_steps=50)
# the backbone trains every step: in-batch softmax over the batch's distinct items (multiplicity correction)
BACKBONE = dict(loss="inbatch", batch_size=64, dropout=0.1, lr=1e-3, item_encoder_lr=5e-5, epochs=4, patience=2)
# only the head and the user encoder train over cached item states: exact softmax over the whole catalogue
CACHED = dict(loss="softmax", batch_size=256, dropout=0.2, lr=1e-3, epochs=100, patience=8)
# a backbone that runs once per item reads 64 title tokens: chosen on validation NDCG@10 with
# study_amazon_settings.py (the frozen model from scratch): 64 tokens 0.0883 > 32 tokens 0.0833
CACHED_TEXT = dict(CACHED, max_title_tokens=64)
FROZEN = dict(CACHED_TEXT, tune="peft", adapter="none", train_head=True, train_user_encoder=True)
# decoupled PEFT: a side network over cached layer states (the backbone never runs after the cache is built)
SIDE = dict(CACHED_TEXT, tune="peft", adapter="side", item_adapter_lr=1e-3, user_adapter_lr=1e-3,
            source_checkpoint=FROM_SOURCE)
WARM_SCRATCH = "runs/amazon-sci-frozen-scratch-32tok/best.pt"  # the LP stage of each backbone row (RUNS below)
WARM_TRANSFER = "runs/amazon-sci-frozen-transfer-32tok/best.pt"
FINETUNE_LRS = dict(lr=1e-4, item_encoder_lr=1e-5)  # LP-FT: the warm head and user encoder move slowly
SOURCE = {**COMMON, **BACKBONE, "dataset": str(OFFICE), "arch": "sasrec", "epochs": 5}
# the fine-tuning stage of LP-FT trains one epoch (133 steps, 6-8 CPU minutes): the budget its rows were measured
# with; the LP stage before it trained the head and user encoder to early stopping
LPFT = dict(BACKBONE, epochs=1)
RUNS = {  # run name -> the target run's settings
    # chosen on validation NDCG@10 (study_amazon_settings.py): initial weights normal(0, 0.02) as RecBole, 0.0802 >
    # xavier_normal's 0.0758 (lr 2e-3 0.0774, fp32 0.0755); then width 128, 0.0817 > 64's 0.0802 (batch 1024 at
    # lr 2e-3 0.0812, history 50 0.0805); then a learning rate decaying to 0 by epoch 30 (cosine), 0.0820 >
    # constant's 0.0817 (width 256 0.0806)
    "amazon-sci-id-sasrec": dict(CACHED, item_tower="id", dropout=0.5, epochs=30, patience=10, init_std=0.02,
                                 embedding_dim=128, lr_schedule="cosine"),
    "amazon-sci-frozen-scratch": dict(FROZEN),
    "amazon-sci-frozen-transfer": dict(FROZEN, source_checkpoint=FROM_SOURCE),
    # LP-FT: the rows whose backbone trains start from the frozen-features model at their own token budget
    # (trained in minutes over the cached backbone), not from an untrained head and user encoder
    "amazon-sci-frozen-scratch-32tok": dict(FROZEN, max_title_tokens=32),
    "amazon-sci-frozen-transfer-32tok": dict(FROZEN, max_title_tokens=32, source_checkpoint=FROM_SOURCE),
    # (the fine-tuning stage's learning rates chosen on validation NDCG@10 after 20 steps from the warm start's
    # 0.0828: lr / backbone lr 1e-3 / 5e-5 0.0715, 1e-4 / 5e-5 0.0769, 1e-4 / 1e-5 0.0816; Houlsby 0.0822)
    "amazon-sci-scratch": dict(LPFT, **FINETUNE_LRS, warm_start=WARM_SCRATCH),
    "amazon-sci-finetune": dict(LPFT, **FINETUNE_LRS, tune="all", source_checkpoint=FROM_SOURCE,
                                warm_start=WARM_TRANSFER),
    "amazon-sci-houlsby": dict(LPFT, tune="peft", adapter="houlsby", item_adapter_lr=1e-3, user_adapter_lr=1e-3,
                               source_checkpoint=FROM_SOURCE, warm_start=WARM_TRANSFER),
    "amazon-sci-lora": dict(LPFT, tune="peft", adapter="lora", item_adapter_size=12, user_adapter_size=4,
                            item_adapter_lr=1e-3, user_adapter_lr=1e-3, source_checkpoint=FROM_SOURCE,
                            warm_start=WARM_TRANSFER),
    # as the Houlsby row trains: item-side method + Houlsby adapters in the user encoder, the rest frozen
    "amazon-sci-side": dict(SIDE, adapter_where="both"),
    # the side network on top of the frozen-features row: head and user encoder train too. Chosen on validation
    # NDCG@10: width 128 (commit 218be39, 32 tokens: 128 0.0868 > 64 0.0844); dropout 0.3 (64 tokens,
    # study_amazon_settings.py: 0.3 0.0918 > 0.2 0.0909 > 0.4 0.0899; lr 2e-3 0.0907 < 1e-3)
    "amazon-sci-side-head-user": dict(SIDE, adapter_where="item", train_head=True, train_user_encoder=True,
                                      item_adapter_size=128, dropout=0.3),
}
# the same side network over the plain MiniLM, without the Office model: what the source adds to it
RUNS["amazon-sci-side-head-user-scratch"] = dict(RUNS["amazon-sci-side-head-user"], source_checkpoint="")
# beyond text only: the side + head + user row with the target's own item IDs fused in (transductive, as
# UniSRec_ID), from Office and without it. Chosen on validation NDCG@10 (study_amazon_settings.py): sum 0.0906 >
# concat 0.0843, gate 0.0832; ID dropout 0.2 0.0888, 0.5 0.0901; the whitening MoE head 0.0909, with ID dropout
# 0.2 0.0913 (the row); dropout 0.5 0.0863. None reaches the text-only row's 0.0922: the IDs overfit
FUSED = dict(RUNS["amazon-sci-side-head-user"], item_tower="fused", item_fusion="sum", item_head="moe",
             id_dropout=0.2)
RUNS["amazon-sci-fused"] = FUSED
RUNS["amazon-sci-fused-scratch"] = dict(FUSED, source_checkpoint="")
# the fused row in two stages: each seed's trained text row (side + head + user) gets the target's IDs added at
# zero (warm_start: the run starts at the text row's scores) and everything trains on, so the IDs learn what the
# content misses instead of overfitting beside a content path that is still untrained. Chosen on validation
# NDCG@10 (study_amazon_settings.py): no ID dropout 0.0938, ID dropout 0.2 0.0936 (the text row: 0.0922)
TWO_STAGE = dict(RUNS["amazon-sci-side-head-user"], item_tower="fused", item_fusion="sum",
                 warm_start=f"runs/amazon-sci-side-head-user{SEED_SUFFIX}/best.pt")
RUNS["amazon-sci-fused-two-stage"] = TWO_STAGE
RUNS["amazon-sci-fused-two-stage-scratch"] = dict(
    TWO_STAGE, source_checkpoint="", warm_start=f"runs/amazon-sci-side-head-user-scratch{SEED_SUFFIX}/best.pt")
# what the text model buys before any target training: the Office model on Scientific as it is (its own token
# budget, 32), and on items it never trained on: the cold-start study (10% of the items held out of training)
RUNS["amazon-sci-zero-shot"] = dict(FROZEN, max_title_tokens=32, zero_shot=True, source_checkpoint=FROM_SOURCE)
COLD = dict(cold_items=0.1)
RUNS["amazon-sci-cold-id-sasrec"] = dict(RUNS["amazon-sci-id-sasrec"], **COLD)
RUNS["amazon-sci-cold-side-head-user"] = dict(RUNS["amazon-sci-side-head-user"], **COLD)
RUNS["amazon-sci-cold-fused"] = dict(FUSED, **COLD)
RUNS["amazon-sci-cold-fused-two-stage"] = dict(
    TWO_STAGE, **COLD, warm_start=f"runs/amazon-sci-cold-side-head-user{SEED_SUFFIX}/best.pt")

# wider: the side + head + user row and its two-stage fused row at width WIDE, from an Office source of that
# width (a source transfers into a model of its own width only). The width chosen on validation NDCG@10 without a
# source (study_amazon_settings.py): 128 0.0939 > 256 0.0919 > 64 0.0899 (amazon-sci-side-head-user-scratch)
WIDE = 128
WIDE_SOURCE_NAME = f"amazon-office-sasrec-d{WIDE}"
FROM_WIDE_SOURCE = f"runs/{WIDE_SOURCE_NAME}/best.pt"
SOURCES = {SOURCE_NAME: SOURCE, WIDE_SOURCE_NAME: dict(SOURCE, embedding_dim=WIDE)}
SIDE_WIDE = dict(RUNS["amazon-sci-side-head-user"], embedding_dim=WIDE, source_checkpoint=FROM_WIDE_SOURCE)
RUNS[f"amazon-sci-side-head-user-d{WIDE}"] = SIDE_WIDE
RUNS[f"amazon-sci-side-head-user-scratch-d{WIDE}"] = dict(SIDE_WIDE, source_checkpoint="")
for origin, source in (("", FROM_WIDE_SOURCE), ("-scratch", "")):
    RUNS[f"amazon-sci-fused-two-stage{origin}-d{WIDE}"] = dict(
        SIDE_WIDE, source_checkpoint=source, item_tower="fused", item_fusion="sum",
        warm_start=f"runs/amazon-sci-side-head-user{origin}-d{WIDE}{SEED_SUFFIX}/best.pt")


def convert() -> None:
    if not (OFFICE / "users.tsv").is_file():
        subprocess.run([sys.executable, str(ROOT / "Dataset" / "convert.py"), "minionerec", "--dir",
                        str(SHARED / "Amazon_Office_MiniOneRec"), "--out", str(OFFICE)], check=True)
    if not (SCIENTIFIC / "users.tsv").is_file():
        subprocess.run([sys.executable, str(ROOT / "Dataset" / "convert.py"), "recbole-split", "--dir",
                        str(SHARED / "Amazon_Scientific_UniSRec"), "--name", "Scientific", "--out", str(SCIENTIFIC)],
                       check=True)


def source_arguments(extra: list[str]) -> list[str]:
    """The arguments for the source runs: without --seeds, which repeats the target runs only (NAME-seed1, ...;
    the report pools them with NAME, whose seed is COMMON["seed"], so that seed may not be repeated), and without
    --dataset, which names the target data (a source trained on it would be the target itself)."""
    rest, seeds = split_seeds(extra)
    if seeds and COMMON["seed"] in seeds:
        raise SystemExit(f"study_amazon.py: --seeds {','.join(map(str, seeds))}: seed {COMMON['seed']} is every run's "
                         "own seed (the run without a -seedN suffix); give the other seeds only")
    return [a for a in rest if not a.startswith("--dataset=")]


def selected(extra: list[str]) -> tuple[list[str], list[str]]:
    """(run names to run, the remaining arguments) from --only=a,b (default: every run)."""
    return select_runs(extra, RUNS, SOURCES, "study_amazon.py")


def sources_to_run(names: list[str], runs_dir: Path) -> list[str]:
    """The Office source runs to start (studies.sources_to_start)."""
    return sources_to_start(names, RUNS, SOURCES, runs_dir)


if __name__ == "__main__":
    argv, jobs = split_jobs(sys.argv[1:])
    names, extra = selected(argv)
    source_argv = source_arguments(extra)
    dry = "--dry_run" in extra or "--dry-run" in extra
    queue = JobQueue(jobs, RUNS_DIR / "launch-logs") if jobs > 1 else None
    if not dry:
        convert()
    for source in sources_to_run(names, RUNS_DIR):
        sweep(__file__, SOURCES[source], {}, name=source, argv=source_argv, run_py=PRETRAIN_RUN, queue=queue)
    for name in names:
        if name in RUNS:
            sweep(__file__, {**COMMON, "dataset": str(SCIENTIFIC), **RUNS[name]}, {}, name=name, argv=extra,
                  queue=queue)
    if queue is not None:
        queue.wait()
    if dry:
        sys.exit(0)
    done = [n for n in RUNS if (RUNS_DIR / n / "results.json").is_file()]
    if done:
        report(done, "report_amazon", "amazon_hr10", "Amazon Office -> Scientific: HR@10 vs trainable parameters")
