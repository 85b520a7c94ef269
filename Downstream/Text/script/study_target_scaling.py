"""Study (scaling, target side): full fine-tuning, Houlsby adapters and training from scratch on 100%..10%
of the target users (nested subsets), from the default source checkpoint (target.py's SOURCE);
Fig/text-target-scaling.png and runs/report_text-target-scaling.md. Extra arguments go to every launcher.
"""
import sys

from adapter4rec.experiments.studies import scaling_study

FRACTIONS = [0.1, 0.25, 0.5, 1.0]   # share of the target users (user_fraction)
SEEDS = [12345]

if __name__ == "__main__":
    scaling_study("Text", "target", FRACTIONS, SEEDS, sys.argv[1:])
