"""Study: where and how to insert adapters (Houlsby unless stated), image target domain: item encoder only /
user encoder only / both; after attention / FFN / both; serial vs parallel; all layers vs the top 2; with vs
without LayerNorm tuning. runs/report_cv_placement.{md,csv}, Fig/cv_placement_hr10.png (+ _curves.png).
Extra arguments go to every launcher (`--epochs=N`, `--seeds 1,2,3`, `--skip_done`, `--dry_run`).
"""
import sys
from pathlib import Path

from adapter4rec.experiments.studies import run_study

RUNS = [  # (launcher, extra arguments, run name)
    ("sm_vit_adapter.py", [], "cv-placement-both"),
    ("sm_vit_adapter.py", ["--adapter_where=item"], "cv-placement-item-only"),
    ("sm_vit_adapter.py", ["--adapter_where=user"], "cv-placement-user-only"),
    ("sm_vit_adapter.py", ["--adapter_sublayers=attention"], "cv-placement-attention-only"),
    ("sm_vit_adapter.py", ["--adapter_sublayers=ffn"], "cv-placement-ffn-only"),
    ("sm_vit_adapter_parallel.py", [], "cv-placement-parallel"),
    ("sm_vit_adapter.py", ["--adapter_layers=2"], "cv-placement-top2-layers"),
    ("sm_vit_adapter.py", ["--tune_layernorm=true"], "cv-placement-with-layernorm"),
    ("sm_vit.py", ["--source_checkpoint="], "cv-placement-scratch"),  # the baseline the flags compare against
]

if __name__ == "__main__":
    run_study(Path(__file__).resolve().parent, RUNS, sys.argv[1:], "report_cv_placement", "cv_placement_hr10",
              "Image target: where and how adapters are inserted")
