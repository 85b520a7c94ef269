"""Run by tests/test_state_store.py under torchrun (2 processes on one node): both ranks ask a DiskStore for the
same record; only local rank 0 may compute it. Each rank appends 'rank <r> filled' to LOG_FILE when its fill
runs, and writes the record it read to OUT_DIR/rank<r>.pt.

argv: CACHE_DIR LOG_FILE OUT_DIR"""
import sys
from pathlib import Path

import torch

from adapter4rec import dist
from adapter4rec.data.store import DiskStore

if __name__ == "__main__":
    cache_dir, log_file, out_dir = sys.argv[1:4]
    dist.setup("cpu")

    def fill(write):
        with open(log_file, "a") as f:
            f.write(f"rank {dist.rank()} filled\n")
        write(1, torch.arange(12.0).reshape(4, 3))
    table = DiskStore(Path(cache_dir)).get_or_build({"kind": "ddp-test"}, (5, 3), "bf16", fill)
    torch.save(table.clone(), Path(out_dir) / f"rank{dist.rank()}.pt")
    dist.cleanup()
