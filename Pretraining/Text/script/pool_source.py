"""Source pretraining on a pool of five domains: Amazon 2014 Beauty, Sports, Toys, Office and MicroLens
micro-videos (~130k users, ~64k items; ../shared/datasets, native users/items format, read in place, not shipped).

MiniLM stays frozen and its layer states are computed once per item and cached; a side network (r = 128), the
head and the SASRec user encoder train on the pool, with the settings of the real-data study's best text row
(Downstream/Text/script/study_amazon.py, amazon-sci-side-head-user) and a loss whose step cost does not grow with
the catalogue: the sampled softmax over the batch's items of the user's own domain plus 1,024 shared uniform
negatives (logQ-corrected). Batches mix the domains temperature-smoothed (n_d ** 0.5); validation ranks each
domain's users against that domain's items, and the mean NDCG@10 over the domains picks the best epoch. Every
variant leaves out the items of the target it is meant for (`pool_exclude_items`), so source and target are
item-disjoint.

    python pool_source.py                     # the five domains (for the Scientific target)
    python pool_source.py --variant=pool-no-office   # leave-one-domain-out, for the Office target
    python pool_source.py --variant=pool-real-text   # without the two keyword-text domains (Sports, Toys)

The end-to-end variant (the backbone trains; for GPUs): `--tune=all --adapter=none --loss=inbatch` (extra
arguments override the settings below). Downstream/Text/script/study_pool.py runs these sources and the target rows.
"""
import runpy
import sys
from pathlib import Path

from adapter4rec.experiments.launch import sweep

HERE = Path(__file__).resolve()
ROOT = HERE.parents[3]
STUDY = runpy.run_path(str(ROOT / "Downstream" / "Text" / "script" / "study_amazon.py"))  # its settings, not a copy
SHARED, SCIENTIFIC = STUDY["SHARED"], STUDY["SCIENTIFIC"]
POOL = ["Amazon14_Beauty", "Amazon14_Sports", "Amazon14_Toys", "Amazon14_Office", "MicroLens_50k"]
WEAK_TEXT = ("Amazon14_Sports", "Amazon14_Toys")  # generated keywords instead of titles
OFFICE_TARGET = SHARED / "Amazon14_Office"


def pool_dataset(domains: list[str]) -> str:
    return ",".join(str(SHARED / d) for d in domains)


# the target's text row: a side network (r = 128) + head + user encoder over the cached MiniLM states
SIDE_ROW = {k: v for k, v in STUDY["RUNS"]["amazon-sci-side-head-user"].items() if k != "source_checkpoint"}
POOL_SOURCE = dict({**STUDY["COMMON"], **SIDE_ROW}, loss="softmax", softmax_negatives=1024,
                   inbatch_correction="multiplicity", domain_sampling="smoothed", domain_temperature=0.5,
                   epochs=12, patience=2, batch_size=512, eval_batch_size=1024)
SOURCES = {
    "pool": dict(POOL_SOURCE, dataset=pool_dataset(POOL), pool_exclude_items=str(SCIENTIFIC / "items.tsv")),
    "pool-no-office": dict(POOL_SOURCE, dataset=pool_dataset([d for d in POOL if d != "Amazon14_Office"]),
                           pool_exclude_items=str(OFFICE_TARGET / "items.tsv")),
    "pool-real-text": dict(POOL_SOURCE, dataset=pool_dataset([d for d in POOL if d not in WEAK_TEXT]),
                           pool_exclude_items=str(SCIENTIFIC / "items.tsv")),
}

if __name__ == "__main__":
    variant = "pool"
    argv = []
    for arg in sys.argv[1:]:
        if arg.startswith("--variant="):
            variant = arg.split("=", 1)[1]
        else:
            argv.append(arg)
    if variant not in SOURCES:
        raise SystemExit(f"pool_source.py: --variant={variant!r}; known: {', '.join(SOURCES)}")
    STUDY["convert"]()  # Scientific's items file (what the pool leaves out)
    sweep(__file__, SOURCES[variant], {}, name=variant, argv=argv)
