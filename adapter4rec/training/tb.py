"""Optional TensorBoard scalars (config `tensorboard=true`): rank 0 writes the train loss and the validation
metrics of every epoch to runs/<name>/tb. The tensorboard package is not a dependency; asking for it
without the package stops the run before any work, saying how to install it."""
from __future__ import annotations

from pathlib import Path

from adapter4rec import dist
from adapter4rec.config import Config


class Board:
    """Does nothing unless cfg.tensorboard; then checks the package at once (every rank, so none is left
    waiting for another) and opens the writer on rank 0 at the first epoch it logs."""

    def __init__(self, cfg: Config, run_dir: Path):
        self.log_dir, self.writer_class, self.writer = run_dir / "tb", None, None
        if not cfg.tensorboard:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as err:
            raise SystemExit(f"adapter4rec: tensorboard=true needs the tensorboard package ({err}); install it "
                             f"with `pip install tensorboard`, or set tensorboard=false") from None
        if dist.is_main():
            self.writer_class = SummaryWriter

    def epoch(self, epoch: int, loss: float, valid: dict) -> None:
        if self.writer_class is None:
            return
        if self.writer is None:  # purge_step: a resumed run drops events an interrupted run wrote from here on
            self.writer = self.writer_class(log_dir=str(self.log_dir), purge_step=epoch)
        self.writer.add_scalar("train/loss", loss, epoch)
        for key, value in valid.items():
            if "@" in key:
                self.writer.add_scalar(f"valid/{key}", value, epoch)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None
