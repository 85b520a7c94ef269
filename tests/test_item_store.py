"""The item store (data/store.py): a hit reuses, a changed key misses, a truncated, corrupted or
half-written record is detected and rebuilt (never read), and under DDP one rank per node builds."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from adapter4rec.config import REPO_ROOT
from adapter4rec.data.store import DiskStore, MemoryStore, key_digest

KEY = {"kind": "test", "weights": "abc", "layers": [2, 4]}
ROWS = torch.tensor([[1.5, -2.0, 3.25], [0.1, 0.2, 0.3], [7.0, 8.0, 9.0]])


class CountingFill:
    def __init__(self, rows=ROWS):
        self.calls, self.rows = 0, rows

    def __call__(self, write):
        self.calls += 1
        write(1, self.rows[:2])  # blocks of rows, as the builder writes them
        write(3, self.rows[2:])


@pytest.mark.parametrize("dtype", ["fp32", "fp16", "bf16"])
def test_a_record_is_built_once_and_read_back(tmp_path, dtype):
    fill = CountingFill()
    table = DiskStore(tmp_path).get_or_build(KEY, (4, 3), dtype, fill)
    expected = torch.cat([torch.zeros(1, 3), ROWS]).to(table.dtype)
    assert torch.equal(table, expected) and table.dtype == {"fp32": torch.float32, "fp16": torch.float16,
                                                           "bf16": torch.bfloat16}[dtype]
    store = DiskStore(tmp_path)
    again = store.get_or_build(KEY, (4, 3), dtype, fill)
    assert fill.calls == 1 and store.report["hit"] is True and torch.equal(again, expected)
    assert torch.equal(MemoryStore().get_or_build(KEY, (4, 3), dtype, CountingFill()), expected)


def test_a_changed_key_is_a_miss_and_leaves_the_old_record(tmp_path):
    fill = CountingFill()
    store = DiskStore(tmp_path)
    store.get_or_build(KEY, (4, 3), "fp32", fill)
    for key in (dict(KEY, weights="abd"), dict(KEY, layers=[4])):
        store.get_or_build(key, (4, 3), "fp32", fill)
        assert store.report["hit"] is False
    store.get_or_build(KEY, (4, 3), "fp16", fill)  # the dtype is part of the key
    assert fill.calls == 4 and len(list(tmp_path.glob("*.bin"))) == 4
    store.get_or_build(KEY, (4, 3), "fp32", fill)
    assert store.report["hit"] is True and fill.calls == 4


def damage_truncate(data, meta):
    with open(data, "r+b") as f:
        f.truncate(10)


def damage_flip(data, meta):
    raw = bytearray(data.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    data.write_bytes(bytes(raw))


def damage_meta(data, meta):
    meta.write_text("{not json")


def damage_half_written(data, meta):
    meta.unlink()  # the builder died after writing the data, before its .json: not a complete record


@pytest.mark.parametrize("damage, reason", [(damage_truncate, "truncated"), (damage_flip, "corrupt"),
                                            (damage_meta, "unreadable"), (damage_half_written, "missing")])
def test_a_damaged_record_is_rebuilt_not_read(tmp_path, damage, reason):
    store = DiskStore(tmp_path)
    store.get_or_build(KEY, (4, 3), "fp32", CountingFill())
    data, meta = store.paths(dict(KEY, store_version=1, shape=[4, 3], dtype="fp32"))
    assert data.is_file() and meta.is_file()
    damage(data, meta)
    other = CountingFill(ROWS + 1)  # a rebuild computes afresh: what is read back is the new fill's rows
    table = store.get_or_build(KEY, (4, 3), "fp32", other)
    assert other.calls == 1 and store.report["rebuilt_because"].startswith(reason)
    assert torch.equal(table[1:], ROWS + 1)
    assert json.loads(meta.read_text())["bytes"] == data.stat().st_size == 4 * 3 * 4


def test_a_failed_build_leaves_nothing_behind(tmp_path):
    def broken(write):
        write(1, ROWS[:1])
        raise RuntimeError("out of memory, say")
    with pytest.raises(RuntimeError, match="out of memory"):
        DiskStore(tmp_path).get_or_build(KEY, (4, 3), "fp32", broken)
    assert list(tmp_path.iterdir()) == []
    assert len(key_digest(KEY)) == 20


def test_one_rank_per_node_builds_under_ddp(tmp_path):
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    log = tmp_path / "fills.txt"
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO_ROOT / "tests" / "state_store_worker.py"), str(tmp_path / "cache"), str(log),
                           str(tmp_path)], cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert log.read_text().splitlines() == ["rank 0 filled"]
    expected = torch.cat([torch.zeros(1, 3), torch.arange(12.0).reshape(4, 3)]).bfloat16()
    for rank in (0, 1):
        assert torch.equal(torch.load(tmp_path / f"rank{rank}.pt"), expected)


def test_facts_and_a_computed_shape_come_back_on_a_hit(tmp_path):
    """Records whose shape is known once computed (token ids) and facts kept beside a record (counts)."""
    calls = []

    def compute():
        calls.append(1)
        return torch.arange(12, dtype=torch.int32).view(3, 4), {"truncated": 2}
    for store in (DiskStore(tmp_path), DiskStore(tmp_path), MemoryStore()):
        table = store.get_or_compute({"kind": "tokens"}, "int32", compute)
        assert torch.equal(table, torch.arange(12, dtype=torch.int32).view(3, 4)) and table.dtype == torch.int32
        assert store.report["facts"] == {"truncated": 2}
    assert len(calls) == 2 and DiskStore(tmp_path).report == {}  # the second DiskStore read it back
    pixels = DiskStore(tmp_path).get_or_build({"kind": "pixels"}, (3, 2), "uint8",
                                              lambda write: write(1, torch.full((2, 2), 255)) or {"missing": 1})
    assert pixels.dtype == torch.uint8 and pixels.tolist() == [[0, 0], [255, 255], [255, 255]]
    again = DiskStore(tmp_path)
    again.get_or_build({"kind": "pixels"}, (3, 2), "uint8", None)  # a hit: fill is never called
    assert again.report["hit"] and again.report["facts"] == {"missing": 1}
    # a key holding tuples (an image spec's mean) is a hit too: it is compared as its .json gives it back
    tupled = {"kind": "pixels", "mean": (0.5, 0.25)}
    DiskStore(tmp_path).get_or_build(tupled, (3, 2), "uint8", lambda write: None)
    again.get_or_build(tupled, (3, 2), "uint8", None)
    assert again.report["hit"]
