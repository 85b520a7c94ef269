"""Beyond text-only transfer, end to end on tiny data: a fused (content + target ID) tower from a text-only source,
a whitening MoE head, the cold-start study and slice, and zero-shot evaluation of the source model."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import adapter4rec.training.train as train
from adapter4rec.checkpoint import CheckpointError, load_source, read_checkpoint
from adapter4rec.config import parse_args
from adapter4rec.data.split import cold_start_items
from adapter4rec.serving.export import export
from adapter4rec.serving.recommend import recommend
from adapter4rec.training.assemble import prepare_model, rebuild_run
from adapter4rec.training.build import build_model, load_data
from tests.conftest import tiny_args

FAST = dict(epochs=1, max_steps_per_epoch=3, loss="softmax", precision="fp32")


def target(tiny_bert, tiny_data, out, **extra):
    return parse_args(tiny_args(tiny_bert, tiny_data / "target", out, stage="downstream", **{**FAST, **extra}))


@pytest.fixture(scope="module")
def source(tiny_bert, tiny_data, tmp_path_factory):
    """A text-only source run's best.pt (linear head)."""
    out = tmp_path_factory.mktemp("fused_source")
    train.run(parse_args(tiny_args(tiny_bert, tiny_data / "source", out, run_name="src", **FAST)))
    return out / "src" / "best.pt"


def test_a_fused_target_loads_the_text_path_and_user_encoder_and_starts_its_id_table(tiny_bert, tiny_data, source,
                                                                                   tmp_path):
    cfg = target(tiny_bert, tiny_data, tmp_path, item_tower="fused", source_checkpoint=source)
    torch.manual_seed(0)
    model = build_model(cfg, load_data(cfg))
    fresh = model.item_encoder.id_fusion.embedding.weight.clone()
    load_source(model, source, dataclasses.asdict(cfg))
    state = read_checkpoint(source)["model"]
    for key, value in model.state_dict().items():
        if key.startswith("item_encoder.id_fusion."):
            assert key not in state
        else:
            assert torch.equal(value, state[key]), key
    assert torch.equal(model.item_encoder.id_fusion.embedding.weight, fresh)  # left as initialised
    # a whitening MoE head over a linear source head starts afresh too; an ID tower still cannot transfer
    moe = target(tiny_bert, tiny_data, tmp_path, item_head="moe", head_experts=2, source_checkpoint=source)
    torch.manual_seed(0)
    model = build_model(moe, load_data(moe))
    load_source(model, source, dataclasses.asdict(moe))
    assert set(model.item_encoder.proj.state_dict()) == {"weight", "shift", "gate"}
    ids = target(tiny_bert, tiny_data, tmp_path, item_tower="id", source_checkpoint=source)
    with pytest.raises(CheckpointError, match="cannot transfer"):
        load_source(build_model(ids, load_data(ids)), source, dataclasses.asdict(ids))


def test_cold_items_never_reach_training_and_are_embedded_by_text_alone(tiny_bert, tiny_data, tmp_path):
    cfg = target(tiny_bert, tiny_data, tmp_path, item_tower="fused", cold_items=0.3, item_fusion="gate")
    data = load_data(cfg)
    cold = cold_start_items(len(data.catalog), 0.3)
    assert cold.sum() == round(0.3 * len(data.catalog))
    assert not cold[data.split.train].any()  # no training window holds a cold item
    assert cold[data.split.test.target].any()  # ...but test targets do
    assert torch.equal(data.split.window_counts == 0, ~(data.split.window_counts > 0))
    model = prepare_model(cfg, data, torch.device("cpu")).eval()
    with torch.no_grad():
        items = torch.arange(1, len(data.catalog) + 1)
        fused = model.item_encoder(items)
        fusion, model.item_encoder.id_fusion = model.item_encoder.id_fusion, None
        text = model.item_encoder(items)
        model.item_encoder.id_fusion = fusion
    never = data.split.window_counts[1:] == 0
    assert never.sum() >= cold.sum()
    torch.testing.assert_close(fused[never], text[never])  # no trained ID: the content vector itself
    assert not torch.allclose(fused[~never], text[~never])


def test_a_fused_peft_run_saves_resumes_exports_and_recommends_with_its_id_table(tiny_bert, tiny_data, source,
                                                                                tmp_path):
    extra = dict(item_tower="fused", item_fusion="concat", id_dropout=0.2, source_checkpoint=source, tune="peft",
                 adapter="side", side_layers="1", cold_items=0.2, epochs=2, run_name="fused")
    results = train.run(target(tiny_bert, tiny_data, tmp_path, **extra))
    best = read_checkpoint(tmp_path / "fused" / "best.pt")
    assert best["kind"] == "trainable"
    assert {k for k in best["model"] if k.startswith("item_encoder.id_fusion.")} == {
        "item_encoder.id_fusion.embedding.weight", "item_encoder.id_fusion.mix.weight",
        "item_encoder.id_fusion.mix.bias"}
    cold = results["test_cold"]
    data = rebuild_run(tmp_path / "fused")[1]
    want = int((data.split.window_counts[data.split.test.target] == 0).sum())
    assert cold["users"] == want > 0 and {"test_cold_no_mask", "popularity_test_cold"} <= set(results)
    assert json.loads((tmp_path / "fused" / "results.json").read_text())["test_cold"] == cold
    full = read_checkpoint(export(tmp_path / "fused", tmp_path / "full.pt"))  # verified against best.pt's metrics
    assert "item_encoder.id_fusion.embedding.weight" in full["model"]
    assert recommend(tmp_path / "fused", None, 5, tmp_path / "recs.tsv").ranked > 0


def test_zero_shot_evaluates_the_source_model_without_touching_a_weight(tiny_bert, tiny_data, source, tmp_path,
                                                                        monkeypatch):
    monkeypatch.setattr(train, "train_one_epoch", lambda *a, **k: pytest.fail("zero-shot trained"))
    monkeypatch.setattr(train, "build_optimizer", lambda *a, **k: pytest.fail("zero-shot built an optimizer"))
    results = train.run(target(tiny_bert, tiny_data, tmp_path, zero_shot="true", source_checkpoint=source,
                               run_name="zs"))
    assert results["best_epoch"] == -1 and results["test"]["users"] > 0 and results["train_seconds"] == 0
    assert results["trainable_params"] == 0 < results["total_params"]
    saved, src = read_checkpoint(tmp_path / "zs" / "best.pt")["model"], read_checkpoint(source)["model"]
    assert saved.keys() == src.keys() and all(torch.equal(saved[k], src[k]) for k in src)
    with pytest.raises(SystemExit, match="zero_shot=True is invalid"):
        target(tiny_bert, tiny_data, tmp_path, zero_shot="true")  # no source model to evaluate


def test_adding_the_id_table_changes_no_other_modules_initial_values(tiny_bert, tiny_data, tmp_path):
    # each module draws from its own stream of the seed: the fused run's content path, user encoder and side
    # network start where the content run they continue started, whatever the global stream holds
    side = dict(tune="peft", adapter="side", adapter_where="item", item_adapter_size=16)
    models = []
    for tower, noise in (("modal", 0), ("fused", 7)):
        cfg = target(tiny_bert, tiny_data, tmp_path, item_tower=tower, **side)
        torch.manual_seed(noise)  # what ran before must not matter either
        models.append(prepare_model(cfg, load_data(cfg), torch.device("cpu")))
    content, fused = (m.state_dict() for m in models)
    assert any(k.startswith("item_encoder.id_fusion.") for k in fused)
    assert any(k.startswith("item_encoder.side.") for k in content)
    for key, value in content.items():
        assert torch.equal(value, fused[key]), key
