"""Checkpoints: atomic save, corrupt files, and loading a source checkpoint with checked keys and shapes."""
from __future__ import annotations

import dataclasses
import errno
import os
import shutil

import pytest
import torch

from adapter4rec.checkpoint import FORMAT, CheckpointError, load_source, read_checkpoint, save_atomic
from adapter4rec.config import parse_args
from adapter4rec.training.build import build_model, load_data
from tests.conftest import make_tiny_bert, tiny_args


def _ckpt(model_state: dict, config: dict | None = None) -> dict:
    return {"format": FORMAT, "config": config or {}, "model": model_state, "epoch": 3,
            "metrics": {"ndcg@10": 0.25}}


def test_save_read_round_trip(tmp_path):
    state = {"w": torch.arange(6.0).view(2, 3), "b": torch.tensor([1, 2], dtype=torch.int64)}
    path = tmp_path / "sub" / "best.pt"  # the folder is created
    save_atomic(_ckpt(state, {"embedding_dim": 16, "topk": "5,10"}), path)
    back = read_checkpoint(path)
    assert back["epoch"] == 3 and back["metrics"] == {"ndcg@10": 0.25} and back["config"]["embedding_dim"] == 16
    assert torch.equal(back["model"]["w"], state["w"]) and torch.equal(back["model"]["b"], state["b"])
    # a plain weights_only load works too (no pickled classes inside)
    assert torch.equal(torch.load(path, weights_only=True)["model"]["w"], state["w"])
    assert sorted(p.name for p in path.parent.iterdir()) == ["best.pt"]  # no temp file left


def test_missing_and_foreign_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "nope.pt")
    torch.save({"state_dict": {}}, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="not an adapter4rec checkpoint"):
        read_checkpoint(tmp_path / "other.pt")


@pytest.mark.parametrize("keep", [0.5, 0.9, 0.0])
def test_truncated_file(tmp_path, keep):
    path = tmp_path / "best.pt"
    save_atomic(_ckpt({"w": torch.randn(64, 64)}), path)
    data = path.read_bytes()
    path.write_bytes(data[:int(len(data) * keep)])
    with pytest.raises(CheckpointError) as err:
        read_checkpoint(path)
    assert str(path) in str(err.value) and "truncated" in str(err.value)


@pytest.mark.parametrize("exc", [RuntimeError("disk full"), KeyboardInterrupt()])
def test_crash_during_save_keeps_previous_file(tmp_path, monkeypatch, exc):
    path = tmp_path / "best.pt"
    save_atomic(_ckpt({"w": torch.ones(3)}), path)
    before = path.read_bytes()
    real_save = torch.save

    def crashing_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04 half a zip archive")  # part of a file is written, then the crash
        raise exc

    monkeypatch.setattr(torch, "save", crashing_save)
    with pytest.raises(type(exc)):
        save_atomic(_ckpt({"w": torch.zeros(3)}), path)
    monkeypatch.setattr(torch, "save", real_save)
    assert path.read_bytes() == before
    assert torch.equal(read_checkpoint(path)["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["best.pt"]  # the temp file was removed


def test_disk_full_during_save(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_atomic(_ckpt({"w": torch.ones(3)}), path)
    before = path.read_bytes()

    def filling_save(obj, handle, *args, **kwargs):
        handle.write(b"PK\x03\x04" + bytes(4096))  # some bytes land, then the device is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(torch, "save", filling_save)
    with pytest.raises(OSError) as err:
        save_atomic(_ckpt({"w": torch.zeros(3)}), path)
    monkeypatch.undo()
    msg = str(err.value)
    assert err.value.errno == errno.ENOSPC and "disk full" in msg and str(path) in msg and "free in" in msg
    assert path.read_bytes() == before  # the previous checkpoint is intact and loadable
    assert torch.equal(read_checkpoint(path)["model"]["w"], torch.ones(3))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temp file left behind


# ------------------------------------------------------------------------------------------ load_source
@pytest.fixture(scope="module")
def source_data(tiny_bert, tiny_data, tmp_path_factory):
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path_factory.mktemp("ck")))
    return load_data(cfg)


def _config(tiny_bert, tiny_data, tmp_path, domain="source", **overrides):
    return parse_args(tiny_args(tiny_bert, tiny_data / domain, tmp_path, **overrides))


def _save_model(cfg, data, path, seed=0):
    model = build_model(dataclasses.replace(cfg, seed=seed), data)  # the modules' initial values derive from it
    save_atomic(_ckpt(model.state_dict(), dataclasses.asdict(cfg)), path)
    return model


def _outputs(model, history):
    model.eval()
    with torch.no_grad():
        return model.user_states(history), model.item_table()


def test_load_source_reproduces_outputs(tiny_bert, tiny_data, tmp_path, source_data):
    cfg = _config(tiny_bert, tiny_data, tmp_path)
    source = _save_model(cfg, source_data, tmp_path / "best.pt", seed=0)
    fresh = build_model(dataclasses.replace(cfg, seed=1), source_data)
    history = source_data.split.test.history[:5]
    want = _outputs(source, history)
    assert not torch.allclose(_outputs(fresh, history)[0], want[0])  # different init: the check can fail
    stored, _ = load_source(fresh, tmp_path / "best.pt", dataclasses.asdict(cfg))
    assert stored["embedding_dim"] == 16
    for got, exp in zip(_outputs(fresh, history), want):
        torch.testing.assert_close(got, exp, rtol=0, atol=0)


def test_load_source_into_target_domain_model(tiny_bert, tiny_data, tmp_path, source_data):
    # the transfer itself: other items, same network; every parameter is taken over
    cfg = _config(tiny_bert, tiny_data, tmp_path)
    source = _save_model(cfg, source_data, tmp_path / "best.pt", seed=0)
    target_cfg = _config(tiny_bert, tiny_data, tmp_path, domain="target", stage="downstream",
                         source_checkpoint=tmp_path / "best.pt")
    target = build_model(dataclasses.replace(target_cfg, seed=2), load_data(target_cfg))
    load_source(target, tmp_path / "best.pt", dataclasses.asdict(target_cfg))
    own = target.state_dict()
    for key, value in source.state_dict().items():
        assert torch.equal(own[key], value), key


def test_different_embedding_dim_is_refused(tiny_bert, tiny_data, tmp_path, source_data):
    _save_model(_config(tiny_bert, tiny_data, tmp_path), source_data, tmp_path / "best.pt")
    cfg32 = _config(tiny_bert, tiny_data, tmp_path, embedding_dim=32)
    model = build_model(cfg32, source_data)
    with pytest.raises(CheckpointError) as err:
        load_source(model, tmp_path / "best.pt", dataclasses.asdict(cfg32))
    assert "embedding_dim=16" in str(err.value) and "embedding_dim=32" in str(err.value)


@pytest.mark.parametrize("hidden,layers,expect", [(64, 2, "shape mismatch"), (32, 1, "unexpected key")])
def test_different_item_encoder_is_refused(tiny_bert, tiny_data, tmp_path, source_data, hidden, layers, expect):
    _save_model(_config(tiny_bert, tiny_data, tmp_path), source_data, tmp_path / "best.pt")
    other = make_tiny_bert(tmp_path / "other-bert", hidden=hidden, layers=layers)
    cfg = _config(other, tiny_data, tmp_path)
    model = build_model(cfg, source_data)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as err:
        load_source(model, tmp_path / "best.pt", dataclasses.asdict(cfg))
    msg = str(err.value)
    assert expect in msg and "item_encoder.backbone." in msg
    assert str(tiny_bert) in msg and str(other) in msg  # names both encoders
    # nothing was loaded half-way
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_other_encoder_family_is_refused(tiny_bert, tiny_data, tmp_path, source_data):
    # a BERT source checkpoint into a model built on a RoBERTa encoder of the same width and depth
    from transformers import RobertaConfig, RobertaModel
    _save_model(_config(tiny_bert, tiny_data, tmp_path), source_data, tmp_path / "best.pt")
    roberta = tmp_path / "tiny-roberta"
    shutil.copytree(tiny_bert, roberta)  # the word-level tokenizer files are reused; the model is RoBERTa
    vocab = len((tiny_bert / "vocab.txt").read_text().split())
    RobertaModel(RobertaConfig(vocab_size=vocab, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                               intermediate_size=64, max_position_embeddings=66, type_vocab_size=1,
                               pad_token_id=0)).save_pretrained(str(roberta))
    cfg = _config(roberta, tiny_data, tmp_path)
    model = build_model(cfg, source_data)
    assert type(model.item_encoder.backbone).__name__ == "RobertaModel"
    with pytest.raises(CheckpointError) as err:
        load_source(model, tmp_path / "best.pt", dataclasses.asdict(cfg))
    msg = str(err.value)
    assert "does not fit this model" in msg and "shape mismatch" in msg and "position_embeddings" in msg
    assert str(tiny_bert) in msg and str(roberta) in msg


def test_id_tower_checkpoint_is_refused(tiny_bert, tiny_data, tmp_path, source_data):
    id_cfg = _config(tiny_bert, tiny_data, tmp_path, item_tower="id")
    _save_model(id_cfg, source_data, tmp_path / "id.pt")
    cfg = _config(tiny_bert, tiny_data, tmp_path)
    model = build_model(cfg, source_data)
    with pytest.raises(CheckpointError, match="ID item tower"):
        load_source(model, tmp_path / "id.pt", dataclasses.asdict(cfg))
    # and an ID-tower run may not load a (text) source checkpoint either
    _save_model(cfg, source_data, tmp_path / "text.pt")
    with pytest.raises(CheckpointError, match="ID item tower"):
        load_source(build_model(id_cfg, source_data), tmp_path / "text.pt", dataclasses.asdict(id_cfg))


# ------------------------------------------------------------------------------------------ export
def test_export_of_peft_run_without_source_has_the_trained_weights(tiny_bert, tiny_data, tmp_path, monkeypatch):
    """No source checkpoint: the frozen weights are the seeded random init, absent from best.pt. The export must
    rebuild exactly them, whatever the caller's RNG state, and refuse when it cannot (here: another seed)."""
    from adapter4rec.serving.export import export
    from adapter4rec.training import train

    trained = {}
    real_finish = train.finish

    def keep_best_model(model, *args, **kwargs):  # finish() loads best.pt into the trained model, then tests it
        results = real_finish(model, *args, **kwargs)
        trained.update({k: v.detach().clone() for k, v in model.state_dict().items()})
        return results

    monkeypatch.setattr(train, "finish", keep_best_model)
    cfg = _config(tiny_bert, tiny_data, tmp_path, domain="target", stage="downstream", tune="peft",
                  adapter="houlsby", item_adapter_size=8, user_adapter_size=8, run_name="peft", max_steps_per_epoch=2)
    train.run(cfg)
    ckpt = read_checkpoint(tmp_path / "peft" / "best.pt")
    assert ckpt["kind"] == "trainable" and not ckpt["source_checkpoint"]
    assert len(ckpt["model"]) < len(trained) / 2  # the frozen weights are not in best.pt

    torch.manual_seed(999)  # the caller's RNG state must not matter
    full = read_checkpoint(export(tmp_path / "peft", tmp_path / "full.pt"))
    assert full["kind"] == "full" and set(full["model"]) == set(trained)
    for key, value in trained.items():
        assert torch.equal(full["model"][key], value), key

    # a run whose seed no longer gives its weights (here the recorded seed is changed) is refused, nothing written
    ckpt["config"]["seed"] += 1
    save_atomic(ckpt, tmp_path / "peft" / "best.pt")
    with pytest.raises(CheckpointError, match="does not reproduce the run's validation metrics"):
        export(tmp_path / "peft", tmp_path / "other.pt")
    assert not (tmp_path / "other.pt").exists()
