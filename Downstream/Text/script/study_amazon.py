"""Study on real data: pretrain on Amazon Office Products, transfer to Amazon Scientific (text only).

The data is NOT shipped: it is read from ../shared/datasets (next to the repository) when present, or from
SHARED below, and converted once with Dataset/convert.py into Dataset/amazon/{office,scientific}/ (git-ignored).
Origin: Amazon Review Data 2018 (McAuley lab), 5-core; Office in the MiniOneRec preprocessing, Scientific in
the UniSRec preprocessing (item text = title. categories. brand.). Runs: source pretraining (SASRec + MiniLM),
then on the target ID-SASRec, text SASRec from scratch, full fine-tuning, Houlsby, LoRA; the report adds the
popularity baseline. Extra arguments are passed to every run (e.g. `--epochs=1` for a try-out);
`--skip_done` continues an interrupted study.
"""
import subprocess
import sys
from pathlib import Path

from adapter4rec.launch import sweep
from adapter4rec.studies import report

ROOT = Path(__file__).resolve().parents[3]
SHARED = ROOT.parent / "shared" / "datasets"
OFFICE, SCIENTIFIC = ROOT / "Dataset" / "amazon" / "office", ROOT / "Dataset" / "amazon" / "scientific"
PRETRAIN_RUN = ROOT / "Pretraining" / "Text" / "run.py"
COMMON = dict(item_encoder="all-MiniLM-L6-v2", loss="inbatch", batch_size=64, max_seq_len=20, embedding_dim=64,
              precision="bf16", max_title_tokens=32, lr=1e-3, item_encoder_lr=5e-5, seed=12345)
SOURCE_EPOCHS, TARGET_EPOCHS = 5, 2
TARGET = dict(COMMON, dataset=str(SCIENTIFIC), epochs=TARGET_EPOCHS,
              source_checkpoint="runs/amazon-office-sasrec/best.pt")
RUNS = {  # run name -> overrides of TARGET
    "amazon-sci-id-sasrec": dict(item_tower="id", source_checkpoint="", epochs=20),
    "amazon-sci-scratch": dict(source_checkpoint=""),
    "amazon-sci-finetune": dict(tune="all"),
    "amazon-sci-houlsby": dict(tune="peft", adapter="houlsby", item_adapter_lr=1.5e-4, user_adapter_lr=1.5e-4),
    "amazon-sci-lora": dict(tune="peft", adapter="lora", item_adapter_size=12, user_adapter_size=4,
                            item_adapter_lr=1e-3, user_adapter_lr=1e-3),
}


def convert() -> None:
    if not (OFFICE / "users.tsv").is_file():
        subprocess.run([sys.executable, str(ROOT / "Dataset" / "convert.py"), "minionerec", "--dir",
                        str(SHARED / "Amazon_Office_MiniOneRec"), "--out", str(OFFICE)], check=True)
    if not (SCIENTIFIC / "users.tsv").is_file():
        subprocess.run([sys.executable, str(ROOT / "Dataset" / "convert.py"), "recbole-split", "--dir",
                        str(SHARED / "Amazon_Scientific_UniSRec"), "--name", "Scientific", "--out", str(SCIENTIFIC)],
                       check=True)


if __name__ == "__main__":
    extra = sys.argv[1:]
    if any(a.startswith("--seeds") for a in extra):
        raise SystemExit("study_amazon.py: --seeds is not supported here (every transfer starts from the one "
                         "source run runs/amazon-office-sasrec); for another seed edit COMMON['seed'] and move runs/ "
                         "aside first")
    convert()
    sweep(__file__, dict(COMMON, dataset=str(OFFICE), epochs=SOURCE_EPOCHS, arch="sasrec"), {},
          name="amazon-office-sasrec", argv=extra, run_py=PRETRAIN_RUN)
    for name, overrides in RUNS.items():
        sweep(__file__, dict(TARGET, **overrides), {}, name=name, argv=extra)
    if "--dry_run" in extra or "--dry-run" in extra:
        sys.exit(0)
    report(list(RUNS), "report_amazon", "amazon_hr10", "Amazon Office -> Scientific: HR@10 vs trainable parameters")
