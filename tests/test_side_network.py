"""Side networks over cached layer states (adapter=side): identity at init, only the side network trains, the
cached path equals the live path, the size limit, the cache key. The keyed store itself (hit / miss /
corruption) is in test_state_store.py; pretrain -> side transfer through the real launchers in
test_end_to_end.py (text) and test_image_models.py (images)."""
from __future__ import annotations

import re

import pytest
import torch

from adapter4rec.adapters.methods import add_adapters
from adapter4rec.adapters.trainable import set_trainable
from adapter4rec.data.store import CacheError, DiskStore, MemoryStore
from adapter4rec.models.negatives import sample_negatives
from adapter4rec.training.build import build_model, load_data
from adapter4rec.training.train import build_optimizer
from tests.test_adapters import config

SIDE_NAMES = r"^item_encoder\.side\.(downs|other_downs|mixes|gates|up)"
USER_ADAPTER_NAMES = r"^user_encoder\..*\.adapter\.(down|up)\."


def side_config(tiny_bert, tiny_data, out, **overrides):
    """test_adapters' tiny PEFT config with the side network in the item encoder and an exact (fp32) cache."""
    return config(tiny_bert, tiny_data, out, **{**dict(adapter="side", adapter_where="item",
                                                       side_cache_dtype="fp32"), **overrides})


@pytest.fixture(scope="module")
def source_model(tiny_bert, tiny_data, tmp_path_factory):
    """A 'source' model: the frozen text tower with a trained-looking (random, non-zero) head and SASRec."""
    cfg = side_config(tiny_bert, tiny_data, tmp_path_factory.mktemp("side"))
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data).eval()
    return model, data, cfg


def scores(model, data):
    with torch.no_grad():
        table = model.item_table()
        users = model.user_states_from_table(data.split.test.history[:16], table)
    return users @ table.T


def with_side(source_model, store=None, **overrides):
    import copy
    model, data, cfg = source_model
    model = copy.deepcopy(model)
    cfg = side_config(cfg.item_encoder, cfg.resolve(cfg.dataset).parent, cfg.resolve(cfg.output_dir), **overrides)
    add_adapters(model, cfg)
    set_trainable(model, cfg)
    if store is not False:
        model.item_encoder.cache_backbone(store or MemoryStore())
    return model.eval(), cfg


@pytest.mark.parametrize("dtype, atol", [("fp32", 1e-5), ("bf16", 0.05)])
def test_side_network_is_the_identity_at_init(source_model, dtype, atol):
    """Before training the transferred model scores as its source model: exactly up to float rounding with an fp32
    cache; a bf16 cache rounds each state to 8 mantissa bits (|score| ~ 1-3 here: 0.05 is ~2% of a score)."""
    model, data, _ = source_model
    reference = scores(model, data)
    side, _ = with_side(source_model, side_cache_dtype=dtype)
    assert side.item_encoder.side.table is not None and side.item_encoder.side.table.dtype == \
        {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    torch.testing.assert_close(scores(side, data), reference, rtol=0, atol=atol)


def test_side_layers_default_to_every_other_layer_and_end_at_the_output(source_model):
    side, _ = with_side(source_model, store=False)
    assert side.item_encoder.side.layers == [2]  # a 2-layer backbone: layer 2 (the output)
    with pytest.raises(SystemExit, match="side_layers"):
        with_side(source_model, store=False, side_layers="0,5")
    side, _ = with_side(source_model, store=False, side_layers="1")
    assert side.item_encoder.side.layers == [1, 2]  # the output is always added


def perturb(model, seed=1):
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for param in model.item_encoder.side.parameters():
            param.add_(0.3 * torch.randn(param.shape, generator=generator))


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])
def test_cached_path_equals_live_path_in_eval(source_model, dtype):
    """The cache holds what the frozen backbone computes (eval mode), and the live path rounds the states to the
    same dtype: the two differ only by float summation order (1e-5)."""
    _, data, _ = source_model
    model, _ = with_side(source_model, side_layers="1", side_cache_dtype=dtype)
    perturb(model)
    cached = scores(model, data)
    model.item_encoder.side.table = None  # the live path: the backbone runs (in eval mode) every call
    model.train()  # the live path runs the backbone in eval mode even when the model trains
    model.user_encoder.eval()
    live = scores(model, data)
    torch.testing.assert_close(cached, live, rtol=0, atol=1e-5)
    assert not torch.allclose(cached, scores(source_model[0], data), atol=1e-3)  # the side network did act


@pytest.mark.parametrize("which", ["catalogue", "subset"])
def test_prepared_table_gives_the_same_numbers_and_gradients(source_model, monkeypatch, which):
    """The cached table's parameter-free part (fp32 conversion + LayerNorm) is prepared once: outputs and side
    gradients equal, bit for bit, the path that prepares each step's rows; a replaced table is prepared again."""
    import adapter4rec.adapters.side as side_module
    model, _ = with_side(source_model, side_layers="1", side_cache_dtype="bf16")
    perturb(model)
    encoder = model.item_encoder.train()
    n = encoder.num_items
    items = torch.arange(1, n + 1) if which == "catalogue" else torch.tensor([3, 1, 3, n, 2])

    def run(limit):
        monkeypatch.setattr(side_module, "PREPARED_SIDE_LIMIT", limit)
        encoder.zero_grad()
        out = encoder(items)
        out.square().sum().backward()
        return out.detach(), [p.grad.clone() for p in encoder.side.parameters()]

    prepared, per_step = run(1 << 30), run(0)
    assert encoder.side.prepared is not None
    assert torch.equal(prepared[0], per_step[0])
    assert all(torch.equal(a, b) for a, b in zip(prepared[1], per_step[1]))
    encoder.side.table = encoder.side.table * 2  # another table: its prepared form must follow
    assert torch.equal(run(1 << 30)[0], run(0)[0])
    assert not torch.equal(run(1 << 30)[0], prepared[0])


def test_both_poolings_add_the_mean_of_each_intermediate_layer_and_keep_the_identity(source_model):
    """side_pooling=both: states = [CLS at layers 1, 2 (the output)] + [the mean of layer 1's real tokens]; the
    identity at init and cached == live hold; the second view reaches the output once it is trained."""
    model, data, _ = source_model
    side, _ = with_side(source_model, side_layers="1", side_pooling="both")
    encoder = side.item_encoder
    assert encoder.side.table.shape[1] == 3 and encoder.side.states_per_item == 3
    items = torch.arange(1, 6)
    with torch.no_grad():
        hidden, _, mask = encoder.encode_all_states(items)
        mean = (hidden[1] * mask.unsqueeze(-1)).sum(1) / mask.sum(1, keepdim=True)
    torch.testing.assert_close(encoder.side.table[items, 2], mean, rtol=0, atol=1e-5)
    torch.testing.assert_close(encoder.side.table[items, 0], hidden[1][:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(scores(side, data), scores(model, data), rtol=0, atol=1e-5)
    perturb(side)
    cached = scores(side, data)
    encoder.side.table = None
    torch.testing.assert_close(cached, scores(side, data), rtol=0, atol=1e-5)
    with torch.no_grad():
        encoder.side.other_downs[0].weight.zero_()
    assert not torch.allclose(cached, scores(side, data), atol=1e-3)  # the mean view is read


def test_only_the_side_network_and_user_adapters_train(source_model):
    model, data, _ = source_model
    side, cfg = with_side(source_model, adapter_where="both", side_layers="1", item_adapter_lr=1e-2,
                         user_adapter_lr=1e-2)
    names = {n for n, p in side.named_parameters() if p.requires_grad}
    assert names and all(re.search(SIDE_NAMES, n) or re.search(USER_ADAPTER_NAMES, n) for n in names), names
    assert any(re.search(USER_ADAPTER_NAMES, n) for n in names)  # user_adapter=auto: houlsby in SASRec
    before = {n: p.detach().clone() for n, p in side.named_parameters()}
    optimizer = build_optimizer(side, cfg)
    side.train()
    generator = torch.Generator().manual_seed(0)
    for step in range(3):  # U trains from step 1; the chain from step 2 (its gradient passes U)
        seqs = data.split.train[step * 16:(step + 1) * 16]
        loss = side(seqs, sample_negatives(seqs, side.num_items, generator))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    for name, param in side.named_parameters():
        moved = not torch.equal(param, before[name])
        assert moved == (name in names), f"{name}: moved={moved}, trainable={name in names}"
    groups = {g["lr"] for g in optimizer.param_groups}
    assert groups == {1e-2}


def test_a_cache_over_the_size_limit_is_refused_before_it_is_built(source_model):
    model, _ = with_side(source_model, store=False)
    with pytest.raises(CacheError, match=r"side_cache_max_gb.*side_layers|side_layers.*side_cache_max_gb"):
        model.item_encoder.cache_backbone(MemoryStore(), side_limit_bytes=1000)
    assert model.item_encoder.side.table is None


def test_side_cache_is_keyed_by_backbone_weights_layers_and_dtype(source_model, tmp_path):
    store = DiskStore(tmp_path)
    model, _ = with_side(source_model, store=store)
    assert store.report["hit"] is False
    with_side(source_model, store=store)
    assert store.report["hit"] is True  # same backbone, inputs, layers, dtype: reused
    for overrides in (dict(side_layers="1"), dict(side_cache_dtype="bf16"), dict(side_pooling="both")):
        with_side(source_model, store=store, **overrides)
        assert store.report["hit"] is False, overrides
    model.item_encoder.pooling = "mean"
    model.item_encoder.cache_backbone(store)
    assert store.report["hit"] is False
    with torch.no_grad():
        model.item_encoder.backbone.embeddings.word_embeddings.weight[5, 0] += 1.0  # another backbone
    model.item_encoder.cache_backbone(store)
    assert store.report["hit"] is False
    assert len(list(tmp_path.glob("states-layers-*.bin"))) == 6


@pytest.mark.parametrize("encoder, pooling", [("tiny_vit", "item"), ("tiny_mae", "item"), ("tiny_vit", "both")])
def test_image_side_network_is_the_identity_at_init_and_caches_exactly(encoder, pooling, request, tiny_image_data,
                                                                       tmp_path):
    """ViT / MAE: the last side state is the final-LayerNorm output the item tower reads, so identity holds (also
    with the patches' mean as a second view of layer 1)."""
    import copy

    from tests.test_image_models import image_config
    cfg = image_config(request.getfixturevalue(encoder), tiny_image_data, tmp_path, adapter="side",
                       adapter_where="item", side_cache_dtype="fp32", side_layers="1", side_pooling=pooling)
    data = load_data(cfg)
    torch.manual_seed(0)
    source = build_model(cfg, data).eval()
    model = copy.deepcopy(source)
    add_adapters(model, cfg)
    set_trainable(model, cfg)
    assert "side network" in model.item_encoder.cache_backbone(DiskStore(tmp_path / "states"))
    torch.testing.assert_close(scores(model.eval(), data), scores(source, data), rtol=0, atol=1e-5)
    perturb(model)
    cached = scores(model, data)
    model.item_encoder.side.table = None
    torch.testing.assert_close(cached, scores(model, data), rtol=0, atol=1e-5)
