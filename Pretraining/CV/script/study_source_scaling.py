"""Study (scaling, source side): pretrain on 10%..100% of the source users (nested subsets), transfer each
source model to the full target with full fine-tuning and Houlsby adapters; Fig/cv-source-scaling.png and
runs/report_cv-source-scaling.md. Extra arguments go to every launcher (e.g. `--epochs=2`, `--dry_run`).
"""
import sys

from adapter4rec.experiments.studies import scaling_study

FRACTIONS = [0.1, 0.25, 0.5, 1.0]   # share of the source users (user_fraction)
SEEDS = [12345]                      # each seed: its own source runs and transfers

if __name__ == "__main__":
    scaling_study("CV", "source", FRACTIONS, SEEDS, sys.argv[1:])
