"""Leave-one-out split, negative sampling and the happy path of the file readers, on hand-made data."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from adapter4rec.data.files import Interactions, read_items, read_users
from adapter4rec.data.split import leave_one_out, left_pad
from adapter4rec.models.negatives import sample_negatives


def _data(*seqs, num_items=9) -> Interactions:
    return Interactions([f"u{i}" for i in range(len(seqs))], [np.array(s, dtype=np.int64) for s in seqs],
                        num_items, {})


def test_left_pad_truncates_and_right_aligns():
    out = left_pad([np.array([1, 2, 3, 4]), np.array([5]), np.array([], dtype=np.int64)], 3)
    assert out.dtype == torch.int64
    assert out.tolist() == [[2, 3, 4], [0, 0, 5], [0, 0, 0]]


def test_leave_one_out_exact_tensors():
    # u0: 1 2 1 3 | 5 | 6  (train part 1 2 1 3, repeated item 1)   u1: 7 | 8 | 9  (train part 7)
    split = leave_one_out(_data([1, 2, 1, 3, 5, 6], [7, 8, 9]), max_seq_len=2)
    # train windows: the last L+1 = 3 items of the train part, left padded
    assert split.train.tolist() == [[2, 1, 3], [0, 0, 7]]
    # valid: history = everything before the 2nd-to-last item, last L of it; target = 2nd-to-last
    assert split.valid.history.tolist() == [[1, 3], [0, 7]]
    assert split.valid.target.tolist() == [5, 8]
    # test: history = everything before the last item; target = last
    assert split.test.history.tolist() == [[3, 5], [7, 8]]
    assert split.test.target.tolist() == [6, 9]
    assert split.valid.users.tolist() == [0, 1] and split.test.users.tolist() == [0, 1]
    # masking uses the WHOLE history (unique), not only the L-item window: item 1 and 2 are outside it
    assert split.valid.seen_ptr.tolist() == [0, 3, 4]
    assert split.valid.seen_items.tolist() == [1, 2, 3, 7]
    assert split.test.seen_ptr.tolist() == [0, 4, 6]
    assert split.test.seen_items.tolist() == [1, 2, 3, 5, 7, 8]
    assert split.valid.repeats_skipped == split.test.repeats_skipped == 0


def test_item_counts_from_train_parts_only():
    split = leave_one_out(_data([1, 2, 1, 3, 5, 6], [7, 8, 9]), max_seq_len=2)
    # train parts: [1, 2, 1, 3] and [7]; valid/test items (5, 6, 8, 9) are not counted; row 0 = 0
    assert split.item_counts.tolist() == [0, 2, 1, 1, 0, 0, 0, 1, 0, 0]
    assert split.item_counts.dtype == torch.int64


def test_repeat_targets_skip_and_no_mask():
    # test target 4 repeats a history item; valid target 8 does not
    data = _data([4, 9, 8, 4], [1, 2, 3])
    skip = leave_one_out(data, max_seq_len=3, eval_repeats="skip")
    assert skip.valid.users.tolist() == [0, 1] and skip.valid.repeats_skipped == 0
    assert skip.test.users.tolist() == [1] and skip.test.repeats_skipped == 1
    assert skip.test.target.tolist() == [3] and skip.test.history.tolist() == [[0, 1, 2]]
    assert skip.test.seen_ptr.tolist() == [0, 2] and skip.test.seen_items.tolist() == [1, 2]
    keep = leave_one_out(data, max_seq_len=3, eval_repeats="no_mask")
    assert keep.test.users.tolist() == [0, 1] and keep.test.repeats_skipped == 0
    assert keep.test.target.tolist() == [4, 3]
    # no_mask: empty CSR rows for everybody
    assert keep.test.seen_ptr.tolist() == [0, 0, 0] and keep.test.seen_items.numel() == 0


def test_leave_one_out_rejects_short_users():
    with pytest.raises(ValueError, match=">= 3 items"):
        leave_one_out(_data([1, 2, 3], [4, 5]), max_seq_len=4)


# ------------------------------------------------------------------------------------------ negatives
def _windows() -> torch.Tensor:
    return torch.tensor([[0, 0, 0, 3, 4, 5],      # padded targets at positions 0, 1
                         [1, 2, 3, 4, 5, 6],
                         [0, 7, 7, 8, 9, 10]])


def test_sample_negatives_shape_padding_and_no_collision():
    seqs = _windows()
    for seed in range(20):
        neg = sample_negatives(seqs, num_items=30, generator=torch.Generator().manual_seed(seed))
        assert neg.shape == (3, 5) and neg.dtype == torch.int64
        targets = seqs[:, 1:]
        assert (neg[targets == 0] == 0).all()
        real = neg[targets > 0]
        assert ((real >= 1) & (real <= 30)).all()
        # never an item of the user's window (inputs or targets)
        clash = (neg.unsqueeze(-1) == seqs.unsqueeze(1)).any(-1) & (targets > 0)
        assert not clash.any()


def test_sample_negatives_avoids_items_when_few_are_left():
    # the user has seen 6 of 12 items: every negative must be one of 7..12 (collisions are re-drawn;
    # a first draw collides with probability 1/2, so without re-drawing about half of them would clash)
    seqs = torch.tensor([[1, 2, 3, 4, 5, 6]] * 4)
    neg = sample_negatives(seqs, num_items=12, generator=torch.Generator().manual_seed(0))
    assert set(neg.flatten().tolist()) <= {7, 8, 9, 10, 11, 12}


def test_sample_negatives_deterministic_for_a_seeded_generator():
    seqs = _windows()
    a = sample_negatives(seqs, 1000, torch.Generator().manual_seed(5))
    b = sample_negatives(seqs, 1000, torch.Generator().manual_seed(5))
    c = sample_negatives(seqs, 1000, torch.Generator().manual_seed(6))
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


# ------------------------------------------------------------------------------------------ file readers
def test_read_items_crlf_blank_lines_two_and_three_columns(tmp_path):
    path = tmp_path / "items.tsv"
    path.write_bytes(b"i1\tFirst title\tFirst abstract\r\n"
                     b"i2\t Second title \r\n"
                     b"\r\n"
                     b"i3\tThird\tThird abstract\r\n")
    cat = read_items(path)
    assert cat.ids == ["i1", "i2", "i3"]
    assert cat.titles == ["First title", "Second title", "Third"]  # no stray \r, stripped
    assert cat.abstracts == ["First abstract", "", "Third abstract"]
    assert cat.index == {"i1": 1, "i2": 2, "i3": 3}  # index 0 is the padding item
    assert len(cat) == 3 and cat.duplicates_skipped == 0


def test_read_users_crlf_maps_ids_in_order(tmp_path):
    path = tmp_path / "users.tsv"
    path.write_bytes(b"u1\ti1 i2 i3\r\n\r\nu2\ti3  i2 i1 i2\r\n")
    data = read_users(path, {"i1": 1, "i2": 2, "i3": 3}, min_seq_len=3, unknown_items="error")
    assert data.user_ids == ["u1", "u2"]
    assert [s.tolist() for s in data.sequences] == [[1, 2, 3], [3, 2, 1, 2]]
    assert data.num_items == 3
    assert data.stats["lines"] == 2 and data.stats["users"] == 2 and data.stats["interactions"] == 7
    assert data.stats["short_users_skipped"] == 0 and data.stats["unknown_items_dropped"] == 0


def test_tiny_dataset_reads_and_splits(tiny_data):
    cat = read_items(tiny_data / "source" / "items.tsv")
    data = read_users(tiny_data / "source" / "users.tsv", cat.index, min_seq_len=5, unknown_items="error")
    split = leave_one_out(data, max_seq_len=8)
    assert split.train.shape == (len(data.sequences), 9)
    assert int(split.item_counts.sum()) == sum(len(s) - 2 for s in data.sequences)
    assert (split.test.target >= 1).all() and (split.test.target <= len(cat)).all()


def test_all_training_windows_make_every_interaction_a_target_once():
    from adapter4rec.data.files import Interactions
    from adapter4rec.data.split import leave_one_out

    rng = np.random.default_rng(3)
    seqs = [rng.integers(1, 50, size=int(n)) for n in (3, 4, 9, 23, 41, 60)]
    data = Interactions([str(i) for i in range(len(seqs))], seqs, 50, {})
    L = 5
    last = leave_one_out(data, L, windows="last").train
    every = leave_one_out(data, L, windows="all").train
    assert torch.equal(last, leave_one_out(data, L).train)  # the paper's default is unchanged
    assert every.shape[1] == L + 1 and len(every) > len(last)
    # the (input, target) pairs of all windows are exactly the training part's consecutive pairs, each once
    got = sorted((int(w[t]), int(w[t + 1])) for w in every for t in range(L) if w[t] > 0 and w[t + 1] > 0)
    want = sorted((int(s[t]), int(s[t + 1])) for s in seqs for t in range(len(s) - 3))
    assert got == want
    # and the newest window of each user is the paper's window (a 1-item window, no loss, is left out)
    newest = {tuple(w.tolist()) for w in last if (w > 0).sum() >= 2}
    assert newest <= {tuple(w.tolist()) for w in every}
