"""Progress output: a tqdm bar on a terminal, a few log lines in a log file, nothing off rank 0."""
from __future__ import annotations

import logging
import sys
import time

from adapter4rec import dist

log = logging.getLogger("adapter4rec")  # the package's logger (rundir.setup_logging gives it its handlers)


class LineProgress:
    """tqdm's interface (update, set_postfix, close) for output that is not a terminal: one log line every
    `every` of the total or every `seconds`, whichever comes first (tqdm would write a carriage-return update per
    step into the log file: ~100 kB per epoch)."""

    def __init__(self, total: int, initial: int = 0, desc: str = "", every: float = 0.1, seconds: float = 60.0,
                 final: bool = True):
        self.total, self.n, self.initial, self.desc, self.final = total, initial, initial, desc, final
        self.step_every, self.seconds = max(1, int(total * every)), seconds
        self.last_n, self.last_time, self.started, self.postfix = initial, time.time(), time.time(), ""

    def update(self, n: int = 1) -> None:
        self.n += n
        if self.n - self.last_n >= self.step_every or time.time() - self.last_time >= self.seconds:
            self._line()

    def set_postfix(self, **values) -> None:
        self.postfix = " ".join(f"{k}={v}" for k, v in values.items())

    def close(self) -> None:
        if self.final and self.n != self.last_n:
            self._line()

    def _line(self) -> None:
        now = time.time()
        rate = (self.n - self.last_n) / max(now - self.last_time, 1e-9)
        mean_rate = (self.n - self.initial) / max(now - self.started, 1e-9)  # since this bar started: steadier
        left = f", {duration((self.total - self.n) / mean_rate)} left" if mean_rate > 0 and self.n < self.total else ""
        log.info("%s: %d/%d (%.0f%%) %.2f it/s%s %s", self.desc, self.n, self.total, 100.0 * self.n / max(self.total, 1),
                 rate, left, self.postfix)
        self.last_n, self.last_time = self.n, now


def duration(seconds: float) -> str:
    """41s, 2m41s, 1h05m: a time a person plans by."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_bar(total: int, desc: str, enabled: bool, initial: int = 0, quiet: bool = False):
    """A tqdm bar on a terminal, LineProgress lines in a log (stderr not a TTY), or nothing (disabled / not rank 0).
    quiet (evaluation): off a terminal, a line only every 60 s, none at the end."""
    from tqdm import tqdm
    if not (enabled and dist.is_main()):
        return tqdm(total=total, initial=initial, disable=True)
    if sys.stderr.isatty():
        return tqdm(total=total, initial=initial, desc=desc, leave=False)
    return LineProgress(total, initial, desc, every=1.0 if quiet else 0.1, final=not quiet)
