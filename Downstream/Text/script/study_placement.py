"""Study: where and how to insert adapters (Houlsby unless stated), text target domain: item encoder only /
user encoder only / both; after attention / FFN / both; serial vs parallel; all layers vs the top 2; with vs
without LayerNorm tuning. runs/report_text_placement.{md,csv}, Fig/text_placement_hr10.png (+ _curves.png).
Extra arguments go to every launcher (`--epochs=N`, `--seeds 1,2,3`, `--skip_done`, `--dry_run`).
"""
import sys
from pathlib import Path

from adapter4rec.experiments.studies import run_study

RUNS = [  # (launcher, extra arguments, run name)
    ("adapter_houlsby.py", [], "text-placement-both"),
    ("adapter_houlsby.py", ["--adapter_where=item"], "text-placement-item-only"),
    ("adapter_houlsby.py", ["--adapter_where=user"], "text-placement-user-only"),
    ("adapter_houlsby.py", ["--adapter_sublayers=attention"], "text-placement-attention-only"),
    ("adapter_houlsby.py", ["--adapter_sublayers=ffn"], "text-placement-ffn-only"),
    ("adapter_houlsby_parallel.py", [], "text-placement-parallel"),
    ("adapter_houlsby.py", ["--adapter_layers=2"], "text-placement-top2-layers"),
    ("adapter_houlsby.py", ["--tune_layernorm=true"], "text-placement-with-layernorm"),
    ("finetune.py", ["--source_checkpoint="], "text-placement-scratch"),  # the baseline the flags compare against
]

if __name__ == "__main__":
    run_study(Path(__file__).resolve().parent, RUNS, sys.argv[1:], "report_text_placement", "text_placement_hr10",
              "Text target: where and how adapters are inserted")
