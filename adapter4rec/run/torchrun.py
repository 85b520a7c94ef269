"""torchrun as the launchers start it, with the run's own exit: `python -m adapter4rec.run.torchrun ARGS` takes
torch.distributed.run's arguments unchanged.

A child that stops on a user error prints its one line `adapter4rec: error: ...` and exits 2; torchrun itself
would then print a 30-line ChildFailedError traceback and exit 1, burying that line and its status. Here the
failing child's exit status is passed on (the first failure's: 2 for a user error, 130 / 143 after Ctrl-C or
SIGTERM) with one line naming it, and an interrupt of torchrun itself ends without its SignalException traceback.
"""
from __future__ import annotations

import logging
import signal
import sys

from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import parse_args, run

INTERRUPTED = {signal.SIGINT: 130, signal.SIGTERM: 143}


def main(argv: list[str]) -> int:
    # the agent's own error report repeats what the child printed, with a traceback header: the child's line is
    # the report
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)
    try:
        run(parse_args(argv))
    except ChildFailedError as err:
        rank, failure = min(err.failures.items())
        status = failure.exitcode if failure.exitcode > 0 else 128 - failure.exitcode  # killed by signal -n
        if status not in (2, *INTERRUPTED.values()):
            print(f"torchrun: rank {rank} exited with status {status} (its output above says why)", file=sys.stderr)
        return status
    except SignalException as err:  # Ctrl-C / SIGTERM reached torchrun: the children stopped and said so
        return INTERRUPTED.get(err.sigval, 128 + int(err.sigval))
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
