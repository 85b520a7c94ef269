"""DDP's data: every training window exactly once per epoch over all ranks, the same steps on every rank, and
(2 real processes) identical weights on both ranks after training."""
from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections import Counter

import pytest

from adapter4rec.config import REPO_ROOT, parse_args
from adapter4rec.data.shards import ShardedBatches
from adapter4rec.training.build import load_data
from tests.conftest import tiny_args


@pytest.mark.parametrize("n, batch, world", [(10, 4, 2), (9, 4, 2), (17, 4, 2), (8, 4, 2), (33, 5, 3), (3, 8, 3),
                                             (100, 7, 4), (2, 1, 2)])
def test_every_window_exactly_once_and_equal_steps(n, batch, world):
    epochs = {}
    for epoch in (0, 1):
        ranks = []
        for rank in range(world):
            sampler = ShardedBatches(n, batch, rank, world, seed=3)
            sampler.set_epoch(epoch)
            ranks.append(list(sampler))
        assert len({len(r) for r in ranks}) == 1 and len(ranks[0]) == len(sampler)  # same number of steps
        assert all(batch_ for r in ranks for batch_ in r)  # no rank ever gets an empty batch
        for step in range(len(sampler)):
            sizes = [len(r[step]) for r in ranks]
            assert max(sizes) - min(sizes) <= 1
        windows = Counter(i for r in ranks for batch_ in r for i in batch_)
        assert sorted(windows) == list(range(n)) and set(windows.values()) == {1}
        epochs[epoch] = [i for step in zip(*ranks) for part in step for i in part]
    assert epochs[0] != epochs[1] or n < 8  # a new order every epoch (3 windows: 1 in 6 orders repeat)


def test_fewer_windows_than_processes_is_refused():
    with pytest.raises(ValueError, match="3 processes"):
        ShardedBatches(2, 4, 0, 3, seed=0)


def test_two_processes_train_on_the_union_once_and_hold_identical_weights(tiny_bert, tiny_data, tmp_path):
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, stage="downstream", batch_size=24,
                               loss="bce", lr=1e-2))
    (tmp_path / "cfg.json").write_text(json.dumps(dataclasses.asdict(cfg)))
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO_ROOT / "tests" / "shard_worker.py"), str(tmp_path / "cfg.json"), str(tmp_path)],
                          cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    n = len(load_data(cfg).split.train)
    for epoch in (0, 1):
        seen = Counter(i for rank in ranks for e, batch in rank["trained"] if e == epoch for i in batch)
        assert sorted(seen) == list(range(n)) and set(seen.values()) == {1}, f"epoch {epoch}"
        mine = [set(i for e, batch in rank["trained"] if e == epoch for i in batch) for rank in ranks]
        assert not mine[0] & mine[1] and mine[0] and mine[1]  # the ranks trained on different users
    assert ranks[0]["steps"] == ranks[1]["steps"] == -(-n // 48) - (1 if 0 < n % 48 < 2 else 0)
    assert ranks[0]["before"] == ranks[1]["before"]  # the same initialisation on both ranks
    assert ranks[0]["after"] == ranks[1]["after"] != ranks[0]["before"]  # DDP kept them identical, and they moved
