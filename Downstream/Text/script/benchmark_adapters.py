"""Study: every transfer method on the target domain, one table and figures (HR@10 vs trainable %, learning
curves): runs/report_text_adapters.{md,csv}, Fig/text_adapters_hr10.png (+ _curves.png).

Runs each launcher of this folder as it is (their constants, target.py's data and source checkpoint).
Extra arguments go to every launcher: `--epochs=1` for a try-out, `--seeds 1,2,3` for mean ± std over seeds,
`--skip_done` to continue. Needs the source checkpoint of Pretraining/Text/script/sm_base_sasrec.py.
"""
import sys
from pathlib import Path

from adapter4rec.experiments.studies import run_study

RUNS = [  # (launcher, extra arguments, run name)
    ("finetune.py", [], "finetune"),
    ("finetune.py", ["--source_checkpoint="], "finetune-scratch"),
    ("frozen.py", [], "frozen"),
    ("adapter_houlsby.py", [], "adapter_houlsby"),
    ("adapter_side.py", [], "adapter_side"),
    ("adapter_houlsby_parallel.py", [], "adapter_houlsby_parallel"),
    ("adapter_pfeiffer.py", [], "adapter_pfeiffer"),
    ("adapter_compacter.py", [], "adapter_compacter"),
    ("adapter_lora.py", [], "adapter_lora"),
    ("adapter_kadapter.py", [], "adapter_kadapter"),
    ("adapter_sp.py", [], "adapter_sp"),
    ("adapter_bitfit.py", [], "adapter_bitfit"),
]

if __name__ == "__main__":
    run_study(Path(__file__).resolve().parent, RUNS, sys.argv[1:], "report_text_adapters", "text_adapters_hr10",
              "Text transfer on the default target data: HR@10 vs trainable parameters")
