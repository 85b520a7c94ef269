"""SASRec user encoder: causality, key-padding masking, shapes, and no NaN with left padding."""
from __future__ import annotations

import pytest
import torch

from adapter4rec.models.user_encoder import SASRecEncoder, attention_mask

B, L, D = 3, 6, 16


@pytest.fixture
def encoder() -> SASRecEncoder:
    torch.manual_seed(0)
    # dropout > 0 on purpose: eval() must switch it off, otherwise the comparisons below would be noisy
    return SASRecEncoder(D, L, blocks=2, heads=2, dropout=0.3).eval()


def _items(seed: int = 1) -> torch.Tensor:
    return torch.randn(B, L, D, generator=torch.Generator().manual_seed(seed))


def test_output_shape_and_eval_determinism(encoder):
    items, valid = _items(), torch.ones(B, L, dtype=torch.bool)
    out = encoder(items, valid)
    assert out.shape == (B, L, D)
    torch.testing.assert_close(out, encoder(items, valid), rtol=0, atol=0)


@pytest.mark.parametrize("t", [0, 2, L - 2])
def test_causal_future_items_do_not_change_the_past(encoder, t):
    items, valid = _items(), torch.ones(B, L, dtype=torch.bool)
    changed = items.clone()
    changed[:, t + 1] += 5.0 * torch.randn(B, D)  # perturb position t+1 only
    before, after = encoder(items, valid), encoder(changed, valid)
    torch.testing.assert_close(after[:, :t + 1], before[:, :t + 1], rtol=1e-5, atol=1e-6)
    # the perturbed position itself (and what follows) does change: the check above can fail
    assert not torch.allclose(after[:, t + 1:], before[:, t + 1:], atol=1e-3)


def test_padding_keys_do_not_influence_real_positions(encoder):
    items = _items()
    valid = torch.ones(B, L, dtype=torch.bool)
    valid[:, :2] = False  # left padding: positions 0 and 1
    changed = items.clone()
    changed[:, :2] = torch.randn(B, 2, D) * 7.0  # whatever sits in the padding slots
    before, after = encoder(items, valid), encoder(changed, valid)
    torch.testing.assert_close(after[:, 2:], before[:, 2:], rtol=1e-5, atol=1e-6)
    # control: the same change with the slots marked as real items does leak into later positions
    all_valid = torch.ones(B, L, dtype=torch.bool)
    assert not torch.allclose(encoder(items, all_valid)[:, 2:], encoder(changed, all_valid)[:, 2:], atol=1e-3)


def test_no_nan_with_left_padding_and_empty_rows(encoder):
    items = _items()
    valid = torch.tensor([[False] * L,                      # a row of padding only
                          [False] * (L - 1) + [True],       # one real item
                          [False, False, True, True, True, True]])
    out = encoder(items, valid)
    assert torch.isfinite(out).all()
    # the gradient through padded rows is finite too (fully masked softmax rows would give NaN)
    encoder.train()
    encoder(items.requires_grad_(), valid).sum().backward()
    assert torch.isfinite(items.grad).all()


def test_attention_mask_exact():
    valid = torch.tensor([[False, True, True]])
    mask = attention_mask(valid)[0, 0]
    # row = query, column = key: causal AND real key, plus the diagonal (padding row attends to itself)
    expected = torch.tensor([[True, False, False],
                             [False, True, False],
                             [False, True, True]])
    assert mask.shape == (3, 3)
    assert torch.equal(mask, expected)


def test_dropout_acts_only_in_train_mode(encoder):
    items, valid = _items(), torch.ones(B, L, dtype=torch.bool)
    eval_out = encoder(items, valid)
    encoder.train()
    torch.manual_seed(3)
    train_out = encoder(items, valid)
    assert not torch.allclose(eval_out, train_out)  # dropout is live in training mode


def test_init_std_sets_the_initial_weights():
    from adapter4rec.models.item_encoders import IdItemEncoder

    torch.manual_seed(0)
    paper = SASRecEncoder(64, L, blocks=2, heads=2, dropout=0.1)
    torch.manual_seed(0)
    recbole = SASRecEncoder(64, L, blocks=2, heads=2, dropout=0.1, init_std=0.02)
    fc1 = (paper.blocks[0].feed_forward.fc1.weight, recbole.blocks[0].feed_forward.fc1.weight)  # (256, 64)
    assert abs(fc1[0].std().item() - (2 / (64 + 256)) ** 0.5) < 0.005  # xavier_normal, the paper's default
    assert abs(fc1[1].std().item() - 0.02) < 0.002 and abs(fc1[1].mean().item()) < 0.002
    assert all(b.abs().max() == 0 for m in (paper, recbole) for n, b in m.named_parameters() if n.endswith("bias")
               and "norm" not in n)
    table = IdItemEncoder(1000, 64, init_std=0.02).embedding.weight
    assert abs(table[1:].std().item() - 0.02) < 0.001 and table[0].abs().max() == 0  # padding row stays zero
    with pytest.raises(SystemExit, match="init_std=-0.1"):
        from adapter4rec.config import parse_args
        parse_args(["--init_std=-0.1"])
