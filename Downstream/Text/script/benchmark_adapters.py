"""Study: every transfer method on the target domain, one table and one figure (HR@10 vs trainable %).

Runs each launcher of this folder as it is (their constants, target.py's data and source checkpoint), then
`python -m adapter4rec.report` over the run directories: runs/report_text_adapters.{md,csv} and
Fig/text_adapters_hr10.png. Extra arguments are passed to every launcher (e.g. `--epochs=1` for a try-out).
Needs the source checkpoint of Pretraining/Text/script/sm_base_sasrec.py.
"""
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[2]
RUNS = [  # (launcher, extra arguments, run directory)
    ("finetune.py", [], "finetune"),
    ("finetune.py", ["--source_checkpoint=", "--run_name=finetune-scratch"], "finetune-scratch"),
    ("frozen.py", [], "frozen"),
    ("adapter_houlsby.py", [], "adapter_houlsby"),
    ("adapter_houlsby_parallel.py", [], "adapter_houlsby_parallel"),
    ("adapter_pfeiffer.py", [], "adapter_pfeiffer"),
    ("adapter_compacter.py", [], "adapter_compacter"),
    ("adapter_lora.py", [], "adapter_lora"),
    ("adapter_kadapter.py", [], "adapter_kadapter"),
    ("adapter_sp.py", [], "adapter_sp"),
    ("adapter_bitfit.py", [], "adapter_bitfit"),
]

if __name__ == "__main__":
    extra = sys.argv[1:]
    for launcher, args, _ in RUNS:
        subprocess.run([sys.executable, str(HERE / launcher), *args, *extra], check=True)
    subprocess.run([sys.executable, "-m", "adapter4rec.report", *[str(ROOT / "runs" / name) for *_, name in RUNS],
                    "--out", str(ROOT / "runs" / "report_text_adapters"),
                    "--fig", str(ROOT / "Fig" / "text_adapters_hr10.png"),
                    "--title", "Text transfer on the default target data: HR@10 vs trainable parameters"],
                   check=True)
