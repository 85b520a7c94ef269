"""Study: every transfer method on the image target domain, one table and figures (HR@10 vs trainable %,
learning curves): runs/report_cv_adapters.{md,csv}, Fig/cv_adapters_hr10.png (+ _curves.png).

Runs each launcher of this folder as it is (target.py's data, encoder and source checkpoint). Extra arguments
go to every launcher: `--epochs=1` for a try-out, `--seeds 1,2,3` for mean ± std, `--skip_done` to continue.
Needs the source checkpoint of Pretraining/CV/script/sm_vit_sasrec.py (`make demo-cv` writes it).
"""
import sys
from pathlib import Path

from adapter4rec.experiments.studies import run_study

RUNS = [  # (launcher, extra arguments, run name)
    ("sm_vit.py", [], "sm_vit"),
    ("sm_vit.py", ["--source_checkpoint="], "sm_vit-scratch"),
    ("sm_vit_frozen.py", [], "sm_vit_frozen"),
    ("sm_vit_adapter.py", [], "sm_vit_adapter"),
    ("sm_vit_side.py", [], "sm_vit_side"),
    ("sm_vit_adapter_parallel.py", [], "sm_vit_adapter_parallel"),
    ("sm_vit_adapter_pfeiffer.py", [], "sm_vit_adapter_pfeiffer"),
    ("sm_vit_compacter.py", [], "sm_vit_compacter"),
    ("sm_vit_lora.py", [], "sm_vit_lora"),
    ("sm_vit_adapter_kadapter.py", [], "sm_vit_adapter_kadapter"),
    ("sm_vit_sp.py", [], "sm_vit_sp"),
    ("sm_vit_bitfit.py", [], "sm_vit_bitfit"),
]

if __name__ == "__main__":
    run_study(Path(__file__).resolve().parent, RUNS, sys.argv[1:], "report_cv_adapters", "cv_adapters_hr10",
              "Image transfer on the default target data: HR@10 vs trainable parameters")
