"""What a user did wrong, told in one line: the base class of every bad-input error and the entry points' exit.

Every error that describes bad input (data, configuration, checkpoints, model folders, image stores, caches, run
folders) derives from UserError, next to its usual built-in base (DataError is also a ValueError,
CheckpointError a RuntimeError...), so an entry point recognises it without importing the modules that raise it.
"""
from __future__ import annotations

import os
import sys


class UserError(Exception):
    """Bad input, not a bug: an entry point prints the message alone (exit_on_user_error)."""


# a diverged run (train.py raises FloatingPointError: non-finite losses or gradients) comes from its settings or
# data, not from a bug: told in one line too
USER_ERRORS = (UserError, FloatingPointError)


def exit_on_user_error(main) -> None:
    """Run an entry point's `main()`. A user error (USER_ERRORS, or our own SystemExit messages) prints ONE line
    `adapter4rec: error: ...` on stderr and exits with status 2 — under torchrun from rank 0 only, so the message
    appears once; a real bug keeps its traceback. Ctrl-C: one line, exit 130. A4R_DEBUG=1 shows the traceback of
    user errors (and of an interrupt) too."""
    debug = os.environ.get("A4R_DEBUG", "") not in ("", "0")
    try:
        main()
    except SystemExit as stop:
        if isinstance(stop.code, str) and not debug:
            _report_and_exit(stop.code)
        raise
    except USER_ERRORS as err:
        if debug:
            raise
        _report_and_exit(f"{type(err).__name__}: {err}")
    except KeyboardInterrupt:  # Ctrl-C outside a training loop (which stops itself and writes last.pt)
        if debug:
            raise
        if int(os.environ.get("RANK", "0")) == 0:
            print("adapter4rec: interrupted (Ctrl-C) outside the training steps: stopped; a later start continues "
                  "from the run's last checkpoint, if it wrote one", file=sys.stderr, flush=True)
        raise SystemExit(130) from None


def _report_and_exit(message: str) -> None:
    if int(os.environ.get("RANK", "0")) == 0:
        text = message if message.startswith("adapter4rec") else f"adapter4rec: error: {message}"
        print(text + "\n(A4R_DEBUG=1 shows the traceback)", file=sys.stderr, flush=True)
    raise SystemExit(2)
