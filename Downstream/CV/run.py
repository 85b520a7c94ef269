"""Target-domain transfer of an image TransRec model (full fine-tuning, any adapter, or from scratch without
--source_checkpoint): `torchrun ... run.py --key value ...`.

Every key is a field of adapter4rec.config.Config (`python run.py --help` lists them)."""
import sys

from adapter4rec.config import parse_args
from adapter4rec.errors import exit_on_user_error
from adapter4rec.training.train import run

if __name__ == "__main__":
    exit_on_user_error(lambda: run(parse_args(sys.argv[1:], stage="downstream", modality="image",
                                              dataset="Dataset/default_cv/target", max_seq_len=10)))
