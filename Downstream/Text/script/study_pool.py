"""Study on real data: a source that knows many domains. Pretrain on a pool of five datasets (Amazon 2014 Beauty,
Sports, Toys, Office and MicroLens micro-videos: ~130k users), then transfer to Amazon Scientific, and to Amazon
Office held out of the pool (leave-one-domain-out, as UniSRec and VQ-Rec evaluate on domains they did not
pretrain on).

The data is NOT shipped: it is read from ../shared/datasets (next to the repository) or SHARED below; the pool
folders are in the native users/items format and read in place, Scientific is converted once by study_amazon.py's
convert(). Every pool source leaves out the items of its target (`pool_exclude_items`: 18 Sports, 11 Office and 1
Toys item share an ASIN with Scientific), so source and target are item-disjoint.

The pool source (`pool`): MiniLM frozen, its layer states computed once per item and cached; a side network, the
head and the SASRec user encoder trained on the pool with the sampled softmax (the batch's items of the user's own
domain + shared uniform negatives, logQ-corrected: a step's cost does not grow with the 64k-item catalogue);
batches mix the domains temperature-smoothed; validation ranks each domain's users against that domain's items
and the mean NDCG@10 over the domains picks the best epoch.

Target rows (each early-stopped on validation NDCG@10, tested once, history masked and not): zero-shot (the pool
model on the target without training), side network + head + user encoder from the pool (its side network,
head and user encoder continue on the target), the same target-only, and the two-stage fused row (target IDs added
to the trained pool row). `--only=`, `--seeds 1,2`, `--jobs=2`, `--skip_done` as in study_amazon.py.
"""
import runpy
import sys
from pathlib import Path

from study_amazon import COMMON, SCIENTIFIC, convert
from study_amazon import RUNS as AMAZON_RUNS

from adapter4rec.experiments.launch import SEED_SUFFIX, JobQueue, split_jobs, split_seeds, sweep
from adapter4rec.experiments.studies import RUNS_DIR, report, select_runs, sources_to_start

ROOT = Path(__file__).resolve().parents[3]
PRETRAIN_RUN = ROOT / "Pretraining" / "Text" / "run.py"
# the pool sources' settings: their launcher's, not a copy
POOL = runpy.run_path(str(ROOT / "Pretraining" / "Text" / "script" / "pool_source.py"))
SOURCES, SIDE_ROW, OFFICE_TARGET = POOL["SOURCES"], POOL["SIDE_ROW"], POOL["OFFICE_TARGET"]


def from_source(source: str) -> str:
    return f"runs/{source}/best.pt"


TARGET_ROW = dict(SIDE_ROW)  # trains on the target exactly as study_amazon's side + head + user row does
RUNS = {}
for target, data, sources in (("sci", SCIENTIFIC, ("pool", "pool-real-text")), ("office", OFFICE_TARGET,
                                                                                   ("pool-no-office",))):
    base = dict(TARGET_ROW, dataset=str(data))
    RUNS[f"{target}-side-head-user-scratch"] = dict(base, source_checkpoint="")
    for source in sources:
        RUNS[f"{target}-zero-shot-from-{source}"] = dict(base, zero_shot=True, source_checkpoint=from_source(source))
        RUNS[f"{target}-side-head-user-from-{source}"] = dict(base, source_checkpoint=from_source(source))
    RUNS[f"{target}-fused-two-stage-from-{sources[0]}"] = dict(
        base, source_checkpoint=from_source(sources[0]), item_tower="fused", item_fusion="sum",
        warm_start=f"runs/{target}-side-head-user-from-{sources[0]}{SEED_SUFFIX}/best.pt")
# the pool's loss on a catalogue where the exact softmax can run too: its validation NDCG@10 against the exact
# one's (sci-side-head-user-scratch), the same row otherwise
RUNS["sci-side-head-user-scratch-sampled-softmax"] = dict(
    RUNS["sci-side-head-user-scratch"], softmax_negatives=POOL["POOL_SOURCE"]["softmax_negatives"])
# low-data targets: the same rows trained on a nested share of Scientific's training users (validation and test
# keep every user), from the pool and without a source
FRACTIONS = (0.01, 0.05, 0.1, 0.25)
for fraction in FRACTIONS:
    for origin, source in (("scratch", ""), ("from-pool", from_source("pool"))):
        RUNS[f"sci-side-head-user-{origin}-users{fraction:g}"] = dict(
            TARGET_ROW, dataset=str(SCIENTIFIC), source_checkpoint=source, user_fraction=fraction)
# the cold-start study under the fixed protocol (items held out are no training candidate): ID-SASRec and the text
# row from the pool and without a source, 10% of Scientific's items never trained
COLD = dict(cold_items=0.1)
RUNS["sci-cold-id-sasrec"] = dict(AMAZON_RUNS["amazon-sci-id-sasrec"], dataset=str(SCIENTIFIC), **COLD)
RUNS["sci-cold-side-head-user-scratch"] = dict(RUNS["sci-side-head-user-scratch"], **COLD)
RUNS["sci-cold-side-head-user-from-pool"] = dict(RUNS["sci-side-head-user-from-pool"], **COLD)
# and the target's IDs added to each seed's trained cold text row (two stages, as study_amazon's fused row): the
# IDs of the held-out items stay untrained, so their rows rank on the content path alone
RUNS["sci-cold-fused-two-stage-scratch"] = dict(
    RUNS["sci-cold-side-head-user-scratch"], item_tower="fused", item_fusion="sum",
    warm_start=f"runs/sci-cold-side-head-user-scratch{SEED_SUFFIX}/best.pt")


if __name__ == "__main__":
    argv, jobs = split_jobs(sys.argv[1:])
    names, extra = select_runs(argv, RUNS, SOURCES, "study_pool.py")
    source_argv, _ = split_seeds(extra)  # a source is trained once, whatever the target seeds
    dry = "--dry_run" in extra or "--dry-run" in extra
    queue = JobQueue(jobs, RUNS_DIR / "launch-logs") if jobs > 1 else None
    if not dry:
        convert()
    for source in sources_to_start(names, RUNS, SOURCES, RUNS_DIR):
        sweep(__file__, SOURCES[source], {}, name=source, argv=source_argv, run_py=PRETRAIN_RUN, queue=queue)
    for name in names:
        if name in RUNS:
            sweep(__file__, {**COMMON, **RUNS[name]}, {}, name=name, argv=extra, queue=queue)
    if queue is not None:
        queue.wait()
    if dry:
        sys.exit(0)
    done = [n for n in [*SOURCES, *RUNS] if (RUNS_DIR / n / "results.json").is_file()]
    if done:
        report(done, "report_pool", "pool_hr10", "Pool source -> Scientific / Office: HR@10 vs trainable parameters")
