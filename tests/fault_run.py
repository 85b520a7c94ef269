"""Test helper, not a test: run a text pretraining (same arguments as Pretraining/Text/run.py) with a fault
injected into one rank's training forward, for the multi-process fault tests under torchrun.

FAULT=raise|nan|sigterm|none  FAULT_RANK=r  FAULT_CALL=k: on rank r, the k-th training forward (1-based) raises
a RuntimeError, returns a NaN loss, or sends SIGTERM to its own process (preemption of one rank); none: no fault."""
import os
import signal
import sys

from adapter4rec.config import parse_args
from adapter4rec.models.recommender import Recommender
from adapter4rec.training.train import run


def inject(kind: str, rank: int, call: int) -> None:
    if kind == "none" or int(os.environ.get("RANK", "0")) != rank:
        return
    real, calls = Recommender.forward, [0]

    def forward(self, *args, **kwargs):
        calls[0] += 1
        if calls[0] == call and kind == "raise":
            raise RuntimeError(f"injected fault on rank {rank} at training forward {call}")
        if kind == "sigterm":
            if calls[0] == call:
                os.kill(os.getpid(), signal.SIGTERM)  # handled by the run: this step finishes first
            return real(self, *args, **kwargs)
        loss = real(self, *args, **kwargs)
        return loss * float("nan") if calls[0] == call else loss
    Recommender.forward = forward


if __name__ == "__main__":
    inject(os.environ["FAULT"], int(os.environ["FAULT_RANK"]), int(os.environ["FAULT_CALL"]))
    run(parse_args(sys.argv[1:], stage="pretrain", modality="text"))
