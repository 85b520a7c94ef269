"""The CNN image item encoder (models/cnn_backbone.py; EfficientNet-Lite0, `make encoders`).

CI has neither the package efficientnet-lite-pytorch nor the placed folder, so the first tests run the whole
path (folder -> loader -> item tower -> frozen-state cache / fine-tuning -> a trained run) over a tiny random CNN
that stands in for the package (a fake `efficientnet_lite_pytorch` module), and check the refusals. The tests
at the end need the placed folder (pretrained_models/efficientnet-lite0) and skip without it: real photos'
item vectors are ordered as their content, and a frozen CNN + head run trains on the tiny image data.
"""
from __future__ import annotations

import copy
import json
import sys
import types

import pytest
import torch
from torch import nn

import adapter4rec
from adapter4rec.adapters.trainable import set_trainable
from adapter4rec.config import REPO_ROOT, parse_args
from adapter4rec.errors import UserError
from adapter4rec.models.cnn_backbone import CnnBackbone
from adapter4rec.models.pretrained import image_spec, load_backbone
from adapter4rec.training.build import build_model, load_data

PLACED = REPO_ROOT / "pretrained_models" / "efficientnet-lite0"
WIDTH = 24  # the tiny stand-in's feature width


class TinyNet(nn.Module):
    """A stand-in with the package model's interface: extract_features -> (n, C, H/32, W/32), BatchNorm inside."""

    def __init__(self):
        super().__init__()
        self._conv_stem = nn.Conv2d(3, 8, 3, stride=4, padding=1, bias=False)
        self._bn0 = nn.BatchNorm2d(8)
        self._conv_head = nn.Conv2d(8, WIDTH, 3, stride=8, padding=1, bias=False)
        self._bn1 = nn.BatchNorm2d(WIDTH)
        self._fc = nn.Linear(WIDTH, 10)

    def extract_features(self, x):
        return torch.relu(self._bn1(self._conv_head(torch.relu(self._bn0(self._conv_stem(x))))))


@pytest.fixture()
def fake_package(monkeypatch):
    module = types.ModuleType("efficientnet_lite_pytorch")
    module.EfficientNet = types.SimpleNamespace(from_name=lambda name, image_size=None: TinyNet())
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", module)


@pytest.fixture(scope="module")
def tiny_cnn_folder(tmp_path_factory):
    """A folder as place_efficientnet.py writes it, for the tiny stand-in (random, seeded weights)."""
    from safetensors.torch import save_file

    folder = tmp_path_factory.mktemp("models") / "cnn"
    folder.mkdir()
    torch.manual_seed(0)
    net = TinyNet()
    save_file({k: v.contiguous() for k, v in net.state_dict().items() if not k.startswith("_fc.")},
              str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({"model_type": "efficientnet_lite",
                                                    "architecture": "efficientnet-lite0", "hidden_size": WIDTH,
                                                    "image_size": 64, "stride": 32}))
    (folder / "preprocessor_config.json").write_text(json.dumps({"size": {"height": 64, "width": 64},
                                                                 "image_mean": [0.5] * 3, "image_std": [0.5] * 3}))
    return folder


def image_config(encoder, data, out, **overrides):
    args = dict(modality="image", dataset=str(data / "target"), item_encoder=str(encoder), output_dir=str(out),
                cache_dir=str(out / "cache"), epochs=1, batch_size=16, max_seq_len=8, embedding_dim=16,
                progress="false", stage="downstream", tune="peft", train_head="true", dropout=0.0)
    args.update(overrides)
    return parse_args([f"--{k}={v}" for k, v in args.items()])


def test_the_cnn_folder_loads_as_a_backbone_whose_cls_and_mean_are_the_pooled_feature(fake_package, tiny_cnn_folder):
    backbone = load_backbone(tiny_cnn_folder, "image").eval()
    assert isinstance(backbone, CnnBackbone) and backbone.config.hidden_size == WIDTH
    assert not any(k.startswith("net._fc") for k in backbone.state_dict())  # the classifier is not ours
    spec = image_spec(tiny_cnn_folder, backbone.config)
    assert (spec.height, spec.mean) == (64, (0.5,) * 3)
    pixels = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = backbone(pixel_values=pixels).last_hidden_state                 # (3, 1 + 2*2, WIDTH)
        reference = backbone.net.extract_features(pixels).mean((2, 3))       # global average pooling
    assert out.shape == (3, 5, WIDTH)
    torch.testing.assert_close(out[:, 0], reference)
    torch.testing.assert_close(out[:, 1:].mean(1), reference)
    with pytest.raises(UserError, match="image CNN"):
        load_backbone(tiny_cnn_folder, "text")


def test_without_the_package_one_line_names_make_encoders(monkeypatch, tiny_cnn_folder):
    monkeypatch.setitem(sys.modules, "efficientnet_lite_pytorch", None)  # an import of it raises ImportError
    with pytest.raises(UserError, match=r"efficientnet-lite-pytorch==0\.1\.0: run `make encoders`"):
        load_backbone(tiny_cnn_folder, "image")


def test_frozen_cnn_is_cached_once_exactly_and_keeps_its_batchnorm(fake_package, tiny_cnn_folder, tiny_image_data,
                                                                   tmp_path):
    cfg = image_config(tiny_cnn_folder, tiny_image_data, tmp_path)
    data = load_data(cfg)
    model = build_model(cfg, data)
    set_trainable(model, cfg)
    encoder = model.item_encoder
    assert not any(p.requires_grad for p in encoder.backbone.parameters()) and encoder.proj.weight.requires_grad
    model.train()  # a frozen CNN's BatchNorm stays in eval mode: its running statistics must not move
    assert not encoder.backbone.net._bn1.training
    items = torch.arange(1, encoder.num_items + 1)
    with torch.no_grad():
        live = encoder(items)
    assert "whole backbone" in encoder.cache_backbone()
    with torch.no_grad():
        torch.testing.assert_close(encoder(items), live, rtol=0, atol=1e-5)
    tuned = copy.deepcopy(model)
    set_trainable(tuned, image_config(tiny_cnn_folder, tiny_image_data, tmp_path, tune="all"))
    tuned.train()
    assert tuned.item_encoder.backbone.net._bn1.training  # fine-tuning: BatchNorm trains as a CNN's does


@pytest.mark.parametrize("settings, expected", [
    (dict(adapter="houlsby"), "adapter=houlsby with adapter_where=both"),
    (dict(adapter="lora", adapter_where="item"), "adapter=lora with adapter_where=item"),
    (dict(adapter="side", adapter_where="item"), "adapter=side"),
    (dict(adapter="prompt", adapter_where="item"), "adapter=prompt"),
    (dict(adapter="kadapter", adapter_where="both"), "adapter=kadapter"),
    (dict(tune_bias="true"), "tune_bias=true"),
])
def test_transformer_methods_on_a_cnn_are_refused_before_any_pixel(settings, expected, tiny_cnn_folder,
                                                                   tiny_image_data, tmp_path):
    # no fake package: the refusal comes from the folder's config alone, before the CNN or the pixels are loaded
    cfg = image_config(tiny_cnn_folder, tiny_image_data, tmp_path, **settings)
    with pytest.raises(UserError, match=expected):
        build_model(cfg, load_data(cfg))
    assert not (tmp_path / "cache").exists()  # no pixel table was decoded


def test_a_cnn_run_trains_with_user_adapters_and_with_full_fine_tuning(fake_package, tiny_cnn_folder,
                                                                      tiny_image_data, tmp_path):
    common = dict(modality="image", dataset=str(tiny_image_data / "target"), item_encoder=str(tiny_cnn_folder),
                  output_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"), epochs=1, batch_size=16,
                  max_seq_len=8, embedding_dim=16, progress="false", max_steps_per_epoch=3)
    user = adapter4rec.fit(**common, run_name="user", tune="peft", train_head=True, adapter="houlsby",
                           adapter_where="user", user_adapter_size=4)
    full = adapter4rec.fit(**common, run_name="full", tune="all")
    for results in (user, full):
        assert 0 <= results["test"]["hr@10"] <= 1


# --- the placed EfficientNet-Lite0 (skipped where `make encoders` has not placed it)
needs_placed = pytest.mark.skipif(not (PLACED / "placed.json").is_file(),
                                  reason=f"{PLACED.name} is not placed (`make encoders` places it)")


@needs_placed
def test_placed_record_and_real_photos_item_vectors_are_ordered_by_content():
    pytest.importorskip("efficientnet_lite_pytorch")
    skimage_data = pytest.importorskip("skimage.data")
    from adapter4rec.data.images import PixelTable, decode
    from adapter4rec.models.item_encoders import ImageItemEncoder

    record = json.loads((PLACED / "placed.json").read_text())
    assert 281 <= record["top5"][record["normalisation"]]["chelsea"][0][0] <= 285  # a cat class
    backbone = load_backbone(PLACED, "image")
    spec = image_spec(PLACED, backbone.config)
    assert (backbone.config.hidden_size, spec.height) == (1280, 224)
    chelsea = skimage_data.chelsea()                                     # (300, 451, 3)
    photos = [chelsea, chelsea[20:260, 60:340][:, ::-1].copy(), skimage_data.coffee(), skimage_data.rocket()]
    rows = [torch.from_numpy(decode(p, spec)[0]) for p in photos]
    pixels = torch.stack([torch.zeros_like(rows[0])] + rows)            # row 0: the padding item
    encoder = ImageItemEncoder(backbone, PixelTable(pixels, "photos"), spec, 16).eval()
    with torch.no_grad():
        pooled = torch.nn.functional.normalize(encoder.encode_pooled(torch.arange(1, 5)), dim=-1)
    similarity = pooled @ pooled.T
    # the cat and its flipped crop are closer than the cat to the coffee or to the rocket
    assert similarity[0, 1] > max(similarity[0, 2], similarity[0, 3]) + 0.3  # measured: 0.89 vs 0.12, 0.14


@needs_placed
def test_placed_frozen_cnn_with_head_trains_one_epoch(tiny_image_data, tmp_path):
    pytest.importorskip("efficientnet_lite_pytorch")
    results = adapter4rec.fit(modality="image", dataset=str(tiny_image_data / "target"),
                              item_encoder=str(PLACED), output_dir=str(tmp_path), cache_dir=str(tmp_path / "cache"),
                              run_name="cnn", epochs=1, batch_size=16, max_seq_len=8, embedding_dim=16,
                              progress="false", image_size=64, tune="peft", train_head=True, train_user_encoder=True)
    assert results["data"]["state_cache"]["bytes"] > 0 and 0 <= results["test"]["hr@10"] <= 1
