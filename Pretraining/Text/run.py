"""Source-domain pretraining of a text TransRec model: `torchrun ... run.py --key value ...`.

Every key is a field of adapter4rec.config.Config (`python run.py --help` lists them)."""
import sys

from adapter4rec.config import parse_args
from adapter4rec.errors import exit_on_user_error
from adapter4rec.training.train import run

if __name__ == "__main__":
    exit_on_user_error(lambda: run(parse_args(sys.argv[1:], stage="pretrain", modality="text")))
