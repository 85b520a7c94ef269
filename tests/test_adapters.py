"""Every PEFT method on a tiny BERT + SASRec: identity at init, injection counts, only adapters change,
adapter-only checkpoints reproduce outputs, LoRA keeps the pretrained weights, the K-Adapter is causal."""
from __future__ import annotations

import copy
import re

import pytest
import torch

from adapter4rec.adapters.lora import to_lora
from adapter4rec.adapters.methods import add_adapters
from adapter4rec.adapters.trainable import set_trainable, trainable_state
from adapter4rec.checkpoint import load_run_weights
from adapter4rec.config import parse_args
from adapter4rec.models.frozen_path import PrefixCache
from adapter4rec.models.negatives import sample_negatives
from adapter4rec.training.build import build_model, load_data
from adapter4rec.training.train import build_optimizer
from tests.conftest import tiny_args

IDENTITY_AT_INIT = ["houlsby", "parallel", "pfeiffer", "compacter", "lora", "kadapter"]
# modules changed per encoder on a 2-layer BERT and a 2-block SASRec
EXPECTED_CHANGES = {"houlsby": 4, "parallel": 4, "pfeiffer": 2, "compacter": 4, "lora": 4, "kadapter": 1}

# what each method may train (names), checked against requires_grad
TRAINABLE_NAMES = {"houlsby": r"\.adapter\.(down|up)\.", "parallel": r"\.adapter\.(down|up)\.",
                   "compacter": r"(\.adapter\.(down|up)\.(left|right|bias)$"  # one rule per encoder, inside it
                                 r"|^(item_encoder\.backbone|user_encoder)\.compacter_rule\.weight$)",
                   "lora": r"\.lora_[AB]$", "kadapter": r"\.kadapter\.", "prompt": r"\.prompt\.embeddings$",
                   "none": r"(\.bias$|norm|LayerNorm|^item_encoder\.proj\.)"}


def config(tiny_bert, tiny_data, tmp_path, **overrides):
    base = dict(stage="downstream", tune="peft", kadapter_item_heads=2, item_adapter_size=16, user_adapter_size=8, dropout=0.0,
                adapter_dropout=0.0)
    base.update(overrides)
    return parse_args(tiny_args(tiny_bert, tiny_data / "target", tmp_path, **base))


@pytest.fixture(scope="module")
def base_model(tiny_bert, tiny_data, tmp_path_factory):
    cfg = config(tiny_bert, tiny_data, tmp_path_factory.mktemp("a"))
    data = load_data(cfg)
    torch.manual_seed(0)
    return build_model(cfg, data).eval(), data


def outputs(model, data):
    """Item table and user states of a few users: the two things an adapter could change."""
    with torch.no_grad():
        table = model.item_table()
        states = model.user_states_from_table(data.split.test.history[:8], table)
    return table, states


def adapted(base_model, cfg):
    model = copy.deepcopy(base_model[0])
    changed = add_adapters(model, cfg)
    set_trainable(model, cfg)
    return model.eval(), changed


@pytest.mark.parametrize("method", IDENTITY_AT_INIT)
def test_identity_at_init_and_injection_counts(method, base_model, tiny_bert, tiny_data, tmp_path):
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter=method)
    model, changed = adapted(base_model, cfg)
    assert {side: len(names) for side, names in changed.items()} == {"item": EXPECTED_CHANGES[method],
                                                                     "user": EXPECTED_CHANGES[method]}
    for got, want in zip(outputs(model, base_model[1]), outputs(*base_model)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_top_k_layers_and_one_encoder_only(base_model, tiny_bert, tiny_data, tmp_path):
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter="houlsby", adapter_layers=1, adapter_where="item")
    _, changed = adapted(base_model, cfg)
    assert list(changed) == ["item"]
    assert changed["item"] == ["encoder.layer.1.attention.output.dropout", "encoder.layer.1.output.dropout"]


def test_prompt_keeps_title_tokens(base_model, tiny_bert, tiny_data, tmp_path):
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter="prompt", adapter_where="item", prompt_tokens=5)
    model, _ = adapted(base_model, cfg)
    table, _ = outputs(model, base_model[1])
    base_table, _ = outputs(*base_model)
    assert not torch.allclose(table, base_table)  # the prompt is not the identity...
    # ...but items stay distinct: every title token still reaches the encoder (the original dropped them)
    distinct = torch.unique(table[1:].round(decimals=5), dim=0)
    assert len(distinct) == len(table) - 1


@pytest.mark.parametrize("method", ["houlsby", "parallel", "compacter", "lora", "kadapter", "prompt", "none"])
def test_only_trainable_parameters_change(method, base_model, tiny_bert, tiny_data, tmp_path):
    extra = dict(adapter_where="item") if method == "prompt" else {}
    if method == "none":
        extra = dict(tune_bias=True, tune_layernorm=True, train_head=True)
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter=method, item_adapter_lr=1e-2, user_adapter_lr=1e-2,
                 lr=1e-2, **extra)
    model, _ = adapted(base_model, cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    with torch.no_grad():  # away from the identity init, where a down projection's gradient is ~0 (compacter's:
        for name, param in model.named_parameters():  # ~1e-14 after 3 steps, less than Adam moves an fp32 value)
            if name in trainable and param.abs().max() == 0:
                param.add_(torch.randn_like(param) * 0.05)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert trainable
    pattern = TRAINABLE_NAMES[method]
    assert all(re.search(pattern, n) for n in trainable), sorted(n for n in trainable if not re.search(pattern, n))
    optimizer = build_optimizer(model, cfg)
    model.train()
    data = base_model[1]
    for step in range(3):
        seqs = data.split.train[step * 16:(step + 1) * 16]
        loss = model(seqs, sample_negatives(seqs, model.num_items, torch.Generator().manual_seed(step)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed <= trainable, sorted(changed - trainable)[:5]
    assert changed == trainable, sorted(trainable - changed)[:5]  # every trainable parameter moved (both encoders)


def test_adapter_checkpoint_reproduces_outputs(base_model, tiny_bert, tiny_data, tmp_path):
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter="houlsby", tune_layernorm=True)
    model, _ = adapted(base_model, cfg)
    with torch.no_grad():  # move every adapter away from its identity init
        for name, param in model.named_parameters():
            if param.requires_grad:
                param.add_(torch.randn_like(param) * 0.05)
    state = trainable_state(model)
    assert set(state) == {n for n, p in model.named_parameters() if p.requires_grad}
    assert all(".up." in k or ".down." in k or "norm" in k.lower() for k in state)
    rebuilt, _ = adapted(base_model, cfg)
    load_run_weights(rebuilt, {"kind": "trainable", "model": state})
    for got, want in zip(outputs(rebuilt, base_model[1]), outputs(model, base_model[1])):
        torch.testing.assert_close(got, want, rtol=0, atol=0)
    del state[next(iter(state))]
    with pytest.raises(Exception, match="missing"):
        load_run_weights(rebuilt, {"kind": "trainable", "model": state})


def test_lora_keeps_pretrained_weight_and_never_merges():
    base = torch.nn.Linear(8, 8)
    lora = to_lora(base, r=2, alpha=1.0)
    assert torch.equal(lora.weight, base.weight) and torch.equal(lora.bias, base.bias)
    x = torch.randn(3, 8)
    torch.testing.assert_close(lora(x), base(x))
    with torch.no_grad():
        lora.lora_B.fill_(0.5)
    lora.eval()
    lora.train()
    assert torch.equal(lora.weight, base.weight)  # merge_weights=False: eval() does not rewrite the weight


def test_user_kadapter_is_causal(base_model, tiny_bert, tiny_data, tmp_path):
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter="kadapter", adapter_where="user")
    model, _ = adapted(base_model, cfg)
    with torch.no_grad():  # a non-zero fusion, so the side network actually contributes
        model.user_encoder.kadapter.fuse.weight.normal_(std=0.5)
        for adapter in model.user_encoder.kadapter.adapters:
            adapter.up.weight.normal_(std=0.5)
    items = torch.randn(2, 8, 16)
    valid = torch.ones(2, 8, dtype=torch.bool)
    valid[0, :3] = False
    with torch.no_grad():
        out = model.user_encoder(items, valid)
        changed = items.clone()
        # change the item at position 5 (not by a constant: the input LayerNorm removes a shift of every feature)
        changed[:, 5] += torch.linspace(-1.0, 1.0, items.shape[-1])
        out2 = model.user_encoder(changed, valid)
    torch.testing.assert_close(out[:, :5], out2[:, :5], rtol=0, atol=1e-6)
    assert not torch.allclose(out[:, 5:], out2[:, 5:])


def test_peft_run_saves_only_adapters_and_exports_full(tiny_bert, tiny_data, tmp_path):
    from adapter4rec.adapters.methods import add_adapters as add
    from adapter4rec.checkpoint import read_checkpoint
    from adapter4rec.config import from_dict
    from adapter4rec.serving.export import export
    from adapter4rec.training.train import run

    short = dict(max_steps_per_epoch=2, epochs=1)
    run(parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path, run_name="src", **short)))
    source = tmp_path / "src" / "best.pt"
    results = run(config(tiny_bert, tiny_data, tmp_path, run_name="peft", adapter="houlsby",
                         source_checkpoint=str(source), **short))
    ckpt = read_checkpoint(tmp_path / "peft" / "best.pt")
    assert ckpt["kind"] == "trainable" and ckpt["source_checkpoint"] == str(source)
    assert sum(v.numel() for v in ckpt["model"].values()) == results["trainable_params"] < results["total_params"] / 5
    assert (tmp_path / "peft" / "best.pt").stat().st_size < source.stat().st_size / 5

    full = export(tmp_path / "peft", tmp_path / "full.pt")
    cfg = from_dict(ckpt["config"])
    data = load_data(cfg)
    a = build_model(cfg, data)  # from the exported file alone
    add(a, cfg)
    set_trainable(a, cfg)
    load_run_weights(a, read_checkpoint(full))
    b = build_model(cfg, data)  # from source + adapter file
    from adapter4rec.checkpoint import load_source
    load_source(b, source, ckpt["config"])
    add(b, cfg)
    set_trainable(b, cfg)
    load_run_weights(b, ckpt)
    for got, want in zip(outputs(a.eval(), data), outputs(b.eval(), data)):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_frozen_backbone_cache_is_exact_in_eval(base_model, tiny_bert, tiny_data, tmp_path):
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter="houlsby", adapter_where="user", train_head=True)
    model, _ = adapted(base_model, cfg)
    want = outputs(model, base_model[1])
    assert model.item_encoder.cache_backbone()  # backbone frozen: cached
    assert model.item_encoder.frozen.table.shape == (model.num_items + 1, model.item_encoder.backbone.config.hidden_size)
    for got, exp in zip(outputs(model, base_model[1]), want):
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-6)
    # the head still trains on top of the cache
    model.train()
    seqs = base_model[1].split.train[:8]
    model(seqs, sample_negatives(seqs, model.num_items, torch.Generator().manual_seed(0))).backward()
    assert model.item_encoder.proj.weight.grad is not None
    # a trainable backbone is never cached
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter="houlsby", adapter_where="item")
    model, _ = adapted(base_model, cfg)
    assert not model.item_encoder.cache_backbone() and model.item_encoder.frozen is None


@pytest.mark.parametrize("method", ["houlsby", "lora"])
def test_frozen_prefix_cache_is_exact_in_eval_and_trains(method, base_model, tiny_bert, tiny_data, tmp_path):
    """Adapters in the top layer only: the embeddings and layer 0 are encoded once per item."""
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter=method, adapter_layers=1, adapter_where="item")
    model, _ = adapted(base_model, cfg)
    with torch.no_grad():  # leave the identity init, so the top layer's adapter matters
        for param in (p for p in model.parameters() if p.requires_grad):
            param.add_(torch.randn_like(param) * 0.05)
    want = outputs(model, base_model[1])
    assert "1 frozen bottom layer" in model.item_encoder.cache_backbone()
    assert isinstance(model.item_encoder.frozen, PrefixCache) and model.item_encoder.frozen.states.shape[:2] == \
        model.item_encoder.token_ids.shape
    for got, exp in zip(outputs(model, base_model[1]), want):
        torch.testing.assert_close(got, exp, rtol=1e-5, atol=1e-6)
    model.train()
    seqs = base_model[1].split.train[:8]
    model(seqs, sample_negatives(seqs, model.num_items, torch.Generator().manual_seed(0))).backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and g.abs().sum() > 0 for g in grads)


def test_frozen_features_baseline_trains_head_and_user_encoder_only(base_model, tiny_bert, tiny_data, tmp_path):
    cfg = config(tiny_bert, tiny_data, tmp_path, train_head="true", train_user_encoder="true", score="cosine",
                 learn_temperature="true")
    model, _ = adapted(base_model, cfg)
    model.scorer = type(model.scorer)("cosine", 0.07, learn_temperature=True)
    set_trainable(model, cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable == {n for n, _ in model.named_parameters()
                         if n.startswith(("user_encoder.", "item_encoder.proj.", "scorer."))}
    assert "scorer.log_scale" in trainable and not any(n.startswith("item_encoder.backbone.") for n in trainable)


@pytest.mark.parametrize("method", ["houlsby", "pfeiffer", "lora", "compacter"])
def test_learning_rate_groups_follow_the_encoders(method, base_model, tiny_bert, tiny_data, tmp_path):
    """Item adapters at item_adapter_lr, user adapters at user_adapter_lr, the head at lr; nothing frozen in the
    optimizer (a user_adapter_lr of 0 or a swapped group would leave one encoder's adapters untrained)."""
    cfg = config(tiny_bert, tiny_data, tmp_path, adapter=method, item_adapter_lr=3e-3, user_adapter_lr=7e-3,
                 lr=5e-4, train_head=True)
    model, _ = adapted(base_model, cfg)
    lr_of = {id(p): g["lr"] for g in build_optimizer(model, cfg).param_groups for p in g["params"]}
    for name, param in model.named_parameters():
        if not param.requires_grad:
            assert id(param) not in lr_of, name
            continue
        want = 5e-4 if name.startswith("item_encoder.proj.") else 7e-3 if name.startswith("user_encoder.") else 3e-3
        assert lr_of[id(param)] == want, name
    assert any(n.startswith("user_encoder.") and p.requires_grad for n, p in model.named_parameters())
