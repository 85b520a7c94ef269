"""ID + content fusion and the whitening MoE head: shapes, gradients, what they compute at init, cold items."""
from __future__ import annotations

import pytest
import torch

from adapter4rec.models.fusion import IdFusion
from adapter4rec.models.item_heads import LinearHead, WhiteningExperts, make_head


@pytest.mark.parametrize("how", ["sum", "concat", "gate"])
def test_fusion_shapes_gradients_and_value_at_init(how):
    torch.manual_seed(0)
    fusion = IdFusion(6, 4, how)
    content = torch.randn(3, 4, requires_grad=True)
    items = torch.tensor([1, 5, 2])
    out = fusion(content, items)
    assert out.shape == (3, 4)
    ids = fusion.embedding.weight[items]
    want = 0.5 * (content + ids) if how == "gate" else content + ids  # concat starts as sum
    torch.testing.assert_close(out, want)
    out.square().sum().backward()
    assert content.grad.abs().sum() > 0 and fusion.embedding.weight.grad[items].abs().sum() > 0
    assert fusion.embedding.weight.grad[[0, 3, 4]].abs().sum() == 0  # rows of other items get nothing
    if how != "sum":
        assert fusion.mix.weight.grad.abs().sum() > 0


@pytest.mark.parametrize("how", ["sum", "concat", "gate"])
def test_cold_items_are_embedded_by_their_content_alone(how):
    torch.manual_seed(0)
    known = torch.tensor([False, True, True, False, True, False, True])  # items 3 and 5 never trained
    fusion = IdFusion(6, 4, how, known=known)
    with torch.no_grad():
        fusion.embedding.weight.normal_()  # a trained-looking table, cold rows included
        if how != "sum":
            fusion.mix.weight.normal_()
    content = torch.randn(4, 4, requires_grad=True)
    items = torch.tensor([3, 1, 5, 2])
    out = fusion(content, items)
    torch.testing.assert_close(out[[0, 2]], content[[0, 2]])  # cold: exactly the content vector
    assert not torch.allclose(out[[1, 3]], content[[1, 3]])
    out.sum().backward()
    assert fusion.embedding.weight.grad[[3, 5]].abs().sum() == 0  # a cold row never trains


def test_id_dropout_falls_back_to_content_in_training_only():
    torch.manual_seed(0)
    fusion = IdFusion(100, 4, "sum", id_dropout=0.5)
    content, items = torch.zeros(1000, 4), torch.randint(1, 101, (1000,))
    with torch.no_grad():
        fusion.embedding.weight.fill_(1.0)
    dropped = (fusion(content, items) == 0).all(1).float().mean().item()
    assert 0.4 < dropped < 0.6
    assert (fusion.eval()(content, items) == 1).all()


def test_whitening_experts_at_init_and_the_shift_they_learn():
    torch.manual_seed(0)
    head = WhiteningExperts(hidden=6, d=4, experts=3)
    x = torch.randn(5, 6)
    weights = head.weight.view(3, 4, 6)
    uniform = torch.stack([x @ weights[i].T for i in range(3)]).mean(0)  # gate 1/k, shifts 0
    torch.testing.assert_close(head(x), uniform)
    # (x - b_i) W_i with a softmax gate, against the definition written out
    with torch.no_grad():
        head.shift.normal_()
        head.gate.normal_()
    gates = torch.softmax(x @ head.gate, -1)
    want = sum(gates[:, i:i + 1] * ((x - head.shift[i]) @ weights[i].T) for i in range(3))
    torch.testing.assert_close(head(x), want)
    head(x).sum().backward()
    assert all(p.grad.abs().sum() > 0 for p in head.parameters())


def test_heads_keep_the_paper_keys_and_refuse_unknown_kinds():
    assert set(make_head("linear", 6, 4).state_dict()) == {"weight", "bias"}
    assert isinstance(make_head("linear", 6, 4), LinearHead)
    assert set(make_head("moe", 6, 4, 2).state_dict()) == {"weight", "shift", "gate"}
    with pytest.raises(ValueError, match="item_head='mlp'"):
        make_head("mlp", 6, 4)
    with pytest.raises(ValueError, match="item_fusion='add'"):
        IdFusion(3, 2, "add")
