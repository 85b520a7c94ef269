"""Where the bottleneck adapters sit, checked against hand-computed sub-layer outputs on tiny BERT, ViT and SASRec
encoders, and which learning rate the Compacter's shared rule trains at.

Serial (Houlsby et al. 2019, and the original code): h = Drop(dense(.)); LN(h + a(h) + x) in BERT/SASRec, h + a(h)
before the residual in ViT — NOT LN(Drop(y + a(y)) + x). Dropout is made a fixed, known mask so the hand computation
can apply the very same mask. Parallel in ViT (He et al. 2022): the adapter reads what its sub-layer reads,
layernorm_before(h) for the attention and layernorm_after(h) for the FFN, not the raw residual stream h.
"""
from __future__ import annotations

import pytest
import torch
from torch import nn
from transformers import BertConfig, BertModel, ViTConfig, ViTModel

from adapter4rec.adapters.bottleneck import Bottleneck
from adapter4rec.adapters.compacter import PHMRule
from adapter4rec.adapters.methods import add_adapters
from adapter4rec.adapters.trainable import set_trainable
from adapter4rec.config import Config
from adapter4rec.models.user_encoder import SASRecEncoder
from adapter4rec.training.train import build_optimizer

D, USER_D = 32, 16
P = 0.5  # the dropout probability of every dropout module in these models


def fixed_dropout(x, p=0.5, training=True, inplace=False):
    """Dropout with a known mask (about 60% kept, the same for every call on a tensor of that shape)."""
    if not training or p == 0:
        return x
    keep = (torch.arange(x.numel(), device=x.device).view_as(x) * 7919 % 5) >= 2
    return x * keep / (1 - p)


@pytest.fixture
def known_dropout(monkeypatch):
    monkeypatch.setattr(torch.nn.functional, "dropout", fixed_dropout)  # nn.Dropout calls F.dropout


class Holder(nn.Module):
    """Just what add_adapters reads from a Recommender: item_encoder.backbone and user_encoder."""

    def __init__(self, backbone: nn.Module):
        super().__init__()
        self.item_encoder = nn.Module()
        self.item_encoder.backbone = backbone
        self.user_encoder = SASRecEncoder(USER_D, max_len=6, blocks=2, heads=2, dropout=P)


def tiny_bert() -> BertModel:
    return BertModel(BertConfig(vocab_size=50, hidden_size=D, num_hidden_layers=2, num_attention_heads=2,
                                intermediate_size=2 * D, hidden_dropout_prob=P, attention_probs_dropout_prob=0.0),
                     add_pooling_layer=False)


def tiny_vit(dropout: float = P) -> ViTModel:
    return ViTModel(ViTConfig(hidden_size=D, num_hidden_layers=2, num_attention_heads=2, intermediate_size=2 * D,
                              image_size=16, patch_size=8, hidden_dropout_prob=dropout,
                              attention_probs_dropout_prob=0.0), add_pooling_layer=False)


def adapted(backbone: nn.Module, adapter: str, where: str = "both", **extra) -> Holder:
    torch.manual_seed(0)
    model = Holder(backbone)
    cfg = Config(adapter=adapter, adapter_where=where, tune="peft", item_adapter_size=8, user_adapter_size=8,
                 embedding_dim=USER_D, num_blocks=2, num_heads=2, **extra).validate()
    add_adapters(model, cfg)
    with torch.no_grad():  # leave the identity init, so where the adapter sits shows in the output
        for module in model.modules():
            if isinstance(module, Bottleneck):
                module.down.weight.normal_(std=0.5)
                module.up.weight.normal_(std=0.5)
                module.up.bias.normal_(std=0.5)
    return model


def parts(sublayer: nn.Module) -> tuple[nn.Linear | None, Bottleneck]:
    """The base output projection (None in SASRec: it sits outside SublayerOutput) and the one adapter."""
    linears = [m for n, m in sublayer.named_modules() if isinstance(m, nn.Linear) and "adapter" not in n]
    adapters = [m for m in sublayer.modules() if isinstance(m, Bottleneck)]
    assert len(linears) <= 1 and len(adapters) == 1
    return (linears[0] if linears else None), adapters[0]


def calls(modules: list[nn.Module], run) -> list[tuple]:
    """(args, output) of each module's call while `run()` executes."""
    seen: dict[int, tuple] = {}
    handles = [m.register_forward_hook(lambda mod, args, out, i=i: seen.__setitem__(i, (args, out)))
               for i, m in enumerate(modules)]
    run()
    for handle in handles:
        handle.remove()
    return [seen[i] for i in range(len(modules))]


def drop(t: torch.Tensor) -> torch.Tensor:
    return fixed_dropout(t, P, True)


@pytest.mark.parametrize("adapter", ["houlsby", "pfeiffer"])
def test_serial_adapter_in_bert_comes_after_the_dropout(adapter, known_dropout):
    model = adapted(tiny_bert(), adapter, where="item").train()
    bert = model.item_encoder.backbone
    sublayers = [m for layer in bert.encoder.layer for m in (layer.attention.output, layer.output)
                 if any(isinstance(a, Bottleneck) for a in m.modules())]
    assert len(sublayers) == (4 if adapter == "houlsby" else 2)  # pfeiffer: FFN only
    ids = torch.randint(5, 50, (3, 7))
    with torch.no_grad():
        for sub, ((hidden, x), out) in zip(sublayers, calls(sublayers, lambda: bert(input_ids=ids))):
            dense, a = parts(sub)
            h = drop(dense(hidden))
            torch.testing.assert_close(out, sub.LayerNorm(h + a(h) + x), rtol=1e-5, atol=1e-5)
            y = dense(hidden)  # the old placement, adapter before the dropout: must differ
            assert not torch.allclose(out, sub.LayerNorm(drop(y + a(y)) + x), atol=1e-3)


def test_serial_adapter_in_sasrec_comes_after_the_dropout(known_dropout):
    model = adapted(tiny_bert(), "houlsby", where="user").train()
    user = model.user_encoder
    sublayers = [m for block in user.blocks for m in (block.attention_output, block.feed_forward_output)]
    items, valid = torch.randn(3, 6, USER_D), torch.ones(3, 6, dtype=torch.bool)
    with torch.no_grad():
        for sub, ((branch, x), out) in zip(sublayers, calls(sublayers, lambda: user(items, valid))):
            _, a = parts(sub)
            h = drop(branch)  # `branch` = the attention / FFN output, before any adapter
            torch.testing.assert_close(out, sub.norm(x + h + a(h)), rtol=1e-5, atol=1e-5)
        # the adapters are no longer inside the attention / FFN: their outputs are the plain sub-layers'
        assert not any(isinstance(m, Bottleneck) for b in user.blocks for m in (*b.attention.modules(),
                                                                                  *b.feed_forward.modules()))


def test_serial_adapter_in_vit_comes_after_the_dropout_before_the_residual(known_dropout):
    model = adapted(tiny_vit(), "houlsby", where="item").train()
    vit = model.item_encoder.backbone
    layer = vit.encoder.layer[0]
    pixels = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        (att_args, att_out), (ffn_args, ffn_out) = calls([layer.attention.output, layer.output], lambda: vit(pixels))
        dense, a = parts(layer.attention.output)
        h = drop(dense(att_args[0]))
        torch.testing.assert_close(att_out, h + a(h), rtol=1e-5, atol=1e-5)  # ViTLayer adds the residual
        dense, a = parts(layer.output)
        h = drop(dense(ffn_args[0]))
        torch.testing.assert_close(ffn_out, h + a(h) + ffn_args[1], rtol=1e-5, atol=1e-5)


def test_bottleneck_applies_no_inner_dropout():
    # Houlsby et al. and the original code: up(act(down(x))), no dropout in between (adapter_dropout is K-Adapter's)
    model = adapted(tiny_bert(), "houlsby", where="both", adapter_dropout=0.5)
    x = torch.randn(4, D)
    for a in (m for m in model.modules() if isinstance(m, Bottleneck)):
        if a.down.in_features == D:
            torch.testing.assert_close(a.train()(x), a.eval()(x), rtol=0, atol=0)


def test_vit_parallel_adapter_reads_what_each_sublayer_reads():
    model = adapted(tiny_vit(dropout=0.0), "parallel", where="item").eval()
    layer = model.item_encoder.backbone.encoder.layer[0]
    with torch.no_grad():
        for norm in (layer.layernorm_before, layer.layernorm_after):  # non-trivial norms: LN(h) != h
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.normal_(std=0.3)
        x = torch.randn(2, 5, D) * 3 + 1
        xn = layer.layernorm_before(x)
        dense, a_att = parts(layer.attention.output)
        h = x + dense(layer.attention.attention(xn)[0]) + a_att(xn)
        hn = layer.layernorm_after(h)
        dense, a_ffn = parts(layer.output)
        want = dense(layer.intermediate(hn)) + h + a_ffn(hn)
        torch.testing.assert_close(layer(x), want, rtol=1e-5, atol=1e-5)
        assert not torch.allclose(layer(x), want - a_ffn(hn) + a_ffn(h), atol=1e-3)  # reading h instead differs
    # the layer's LayerNorm is reused, not registered (or saved) a second time under the adapter
    names = [n for n, _ in model.named_parameters()]
    assert sum("layernorm_after" in n for n in names) == 2 * 2  # 2 layers x (weight, bias)


@pytest.mark.parametrize("where", ["user", "item", "both"])
def test_compacter_rule_trains_at_its_encoders_adapter_lr(where):
    model = adapted(tiny_bert(), "compacter", where=where)
    cfg = Config(adapter="compacter", adapter_where=where, tune="peft", item_adapter_lr=0.3, user_adapter_lr=0.7,
                 lr=0.1, item_encoder_lr=0.05).validate()
    set_trainable(model, cfg)
    lr_of = {id(p): g["lr"] for g in build_optimizer(model, cfg).param_groups for p in g["params"]}
    rules = {name: m for name, m in model.named_modules() if isinstance(m, PHMRule)}
    want = {"user": [0.7], "item": [0.3], "both": [0.3, 0.7]}[where]
    assert sorted(lr_of[id(m.weight)] for m in rules.values()) == want, rules
    for name, rule in rules.items():  # each encoder's rule trains at that encoder's adapter lr
        assert lr_of[id(rule.weight)] == (0.7 if name.startswith("user_encoder.") else 0.3)
