"""The image item encoder over a patch-14 ViT (the layout of the real DINOv2 ViT-S/14 that
pretrained_models/place_dinov2.py places), on a SMALL random ViTModel so CI, which has no real model placed,
covers the path: CLS of the final LayerNorm, mean pooling, image_size with an interpolated position table,
the frozen-state caches, the side network over every layer, adapters injected into its layers; and which ViT
the image demo picks."""
from __future__ import annotations

import copy
import json

import pytest
import torch

from adapter4rec.adapters.methods import add_adapters
from adapter4rec.adapters.trainable import set_trainable
from adapter4rec.errors import UserError
from adapter4rec.training.build import build_model, load_data
from tests.test_image_models import image_config, outputs

PATCH, NATIVE = 14, 28  # a 2x2 grid at the checkpoint's own size


@pytest.fixture(scope="module")
def vit14(tmp_path_factory):
    """A 2-layer, width-32 ViTModel with patch 14 and 28 px input, ImageNet normalisation (as the real one)."""
    from adapter4rec.models.vit_init import write_vit_folder

    folder = write_vit_folder(tmp_path_factory.mktemp("models") / "vit14", hidden=32, layers=2, heads=2,
                              image_size=NATIVE, patch_size=PATCH)
    pre = json.loads((folder / "preprocessor_config.json").read_text())
    pre.update(image_mean=[0.485, 0.456, 0.406], image_std=[0.229, 0.224, 0.225], resample=3)
    (folder / "preprocessor_config.json").write_text(json.dumps(pre))
    return folder


def built(vit14, data_root, out, **overrides):
    cfg = image_config(vit14, data_root, out, **overrides)
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data)
    add_adapters(model, cfg)
    set_trainable(model, cfg)
    return model.eval(), data, cfg


def direct_states(encoder, ids, interpolate):
    """The backbone called by hand on the item's normalised pixels: (n, 1 + patches, h)."""
    raw = encoder.pixels.gather(ids).float() / 255
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        return encoder.backbone(pixel_values=(raw - mean) / std,
                                interpolate_pos_encoding=interpolate).last_hidden_state


@pytest.mark.parametrize("image_size", [0, 56])
def test_patch14_cls_and_mean_pooling_read_the_final_layernorm(vit14, tiny_image_data, tmp_path, image_size):
    """image_size=0: the checkpoint's 28 px (2x2 patches); 56: a 4x4 grid, positions interpolated."""
    model, data, _ = built(vit14, tiny_image_data, tmp_path, image_size=image_size, tune="all")
    encoder = model.item_encoder
    side = image_size or NATIVE
    assert encoder.pixels.array.shape[1:] == (3, side, side) and encoder.patches() == (side // PATCH) ** 2
    assert encoder.interpolate == bool(image_size)
    ids = torch.arange(1, 9)
    states = direct_states(encoder, ids, interpolate=bool(image_size))
    assert states.shape == (8, 1 + (side // PATCH) ** 2, 32)
    with torch.no_grad():
        torch.testing.assert_close(encoder.encode_pooled(ids), states[:, 0], rtol=0, atol=1e-6)  # CLS
        torch.testing.assert_close(encoder.pool(*encoder.encode_states(ids), pooling="mean"),
                                   states[:, 1:].mean(1), rtol=0, atol=1e-6)
        table, _ = outputs(model, data)
    assert len(torch.unique(table[1:].round(decimals=5), dim=0)) == len(data.catalog)  # pixels differ per item


def test_image_size_not_a_multiple_of_the_patch_is_refused(vit14, tiny_image_data, tmp_path):
    with pytest.raises(UserError, match="image_size=30: expected a multiple of vit14's patch size 14"):
        built(vit14, tiny_image_data, tmp_path, image_size=30)


@pytest.mark.parametrize("image_size", [0, 42])
def test_patch14_frozen_caches_are_exact(vit14, tiny_image_data, tmp_path, image_size):
    """The frozen baseline's pooled cache and the frozen-prefix cache (adapters in the top layer only)."""
    for overrides, what in ((dict(adapter="none", train_head=True), "pooled"),
                            (dict(adapter="houlsby", adapter_layers=1, adapter_where="item"), "frozen bottom layer")):
        model, data, _ = built(vit14, tiny_image_data, tmp_path, image_size=image_size, **overrides)
        with torch.no_grad():
            for param in (p for p in model.parameters() if p.requires_grad):
                param.add_(torch.randn_like(param) * 0.05)  # trained adapters, so the top layer is not identity
        want, _ = outputs(model, data)
        cached = model.item_encoder.cache_backbone()
        assert what in cached, cached
        got, _ = outputs(model, data)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_patch14_side_network_over_every_layer(vit14, tiny_image_data, tmp_path):
    model, data, _ = built(vit14, tiny_image_data, tmp_path, image_size=42, adapter="side", side_layers="1,2",
                           adapter_where="item")
    encoder = model.item_encoder
    live, _ = outputs(model, data)                       # the side network over live backbone states
    assert "layers [1, 2]" in encoder.cache_backbone()
    assert encoder.side.table is not None
    cached, _ = outputs(model, data)
    torch.testing.assert_close(cached, live, rtol=1e-5, atol=1e-6)
    trains = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trains and not any(n.startswith("item_encoder.backbone.") for n in trains)


@pytest.mark.parametrize("method, changed", [("houlsby", 4), ("lora", 4), ("kadapter", 1)])
def test_adapters_find_the_patch14_layers_and_are_identity_at_init(vit14, tiny_image_data, tmp_path, method,
                                                                   changed):
    plain, data, cfg = built(vit14, tiny_image_data, tmp_path, image_size=42, tune="all")
    model = copy.deepcopy(plain)
    cfg = image_config(vit14, tiny_image_data, tmp_path, image_size=42, adapter=method, adapter_where="item")
    names = add_adapters(model, cfg)
    assert len(names["item"]) == changed
    set_trainable(model, cfg)
    for got, want in zip(outputs(model.eval(), data), outputs(plain, data)):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


def test_visual_prompt_runs_at_an_interpolated_size(vit14, tiny_image_data, tmp_path):
    model, data, _ = built(vit14, tiny_image_data, tmp_path, image_size=42, adapter="prompt", adapter_where="item",
                           prompt_tokens=3)
    encoder = model.item_encoder
    with torch.no_grad():
        hidden, patches = encoder.encode_states(torch.arange(1, 5))
    assert hidden.shape == (4, 1 + 3 + 9, 32) and patches == 9
    assert torch.isfinite(outputs(model, data)[0]).all()


def test_the_image_demo_uses_the_real_vit_only_where_placed(tmp_path, monkeypatch):
    from adapter4rec.experiments import demo

    monkeypatch.setattr(demo, "REAL_VIT", tmp_path / "dinov2-vits14-224")
    assert demo.image_demo("auto") == demo.image_demo("tiny") == "image"
    with pytest.raises(SystemExit, match="--vit=real needs .*dinov2-vits14-224 \\(run `make encoders`\\)"):
        demo.image_demo("real")
    (tmp_path / "dinov2-vits14-224").mkdir()
    (tmp_path / "dinov2-vits14-224" / "placed.json").write_text("{}")
    assert demo.image_demo("auto") == demo.image_demo("real") == "image-real" and demo.image_demo("tiny") == "image"
    assert "DINOv2" in demo.ENCODERS["image-real"] and "random" in demo.ENCODERS["image"]
