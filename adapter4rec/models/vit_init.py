"""Randomly initialised ViT / MAE checkpoint folders, for the image demo and the tests.

No ViT or MAE weights can be downloaded in our environment, so the CV demo starts from a small ViT built
from a `ViTConfig` and pretrains it (with the user encoder) on the source domain; paper-size checkpoints
(vit-base-patch16-224, mae) load the same way from pretrained_models/ when a user puts them there.
The folder holds config.json, model.safetensors and a preprocessor_config.json (size, mean, std) that the
item encoder reads, like a Hugging Face checkpoint.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch


def write_vit_folder(folder: Path, hidden: int = 64, layers: int = 4, heads: int = 4, image_size: int = 32,
                     patch_size: int = 8, seed: int = 0, mae: bool = False, init_range: float = 0.1) -> Path:
    """init_range: std of the initial weights. HF's 0.02 leaves a small random ViT's CLS output nearly the
    same for every image (mean cosine 0.94 over the demo images), and recommendation training then sits on
    the popularity solution for many epochs before it starts to read the pixels; 0.1 (cosine 0.81) leaves
    the pixels a stronger say from the start."""
    from transformers import ViTConfig, ViTMAEConfig, ViTMAEModel, ViTModel

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sizes = dict(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=heads,
                 intermediate_size=4 * hidden, image_size=image_size, patch_size=patch_size,
                 hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0, initializer_range=init_range)
    torch.manual_seed(seed)
    if mae:
        model = ViTMAEModel(ViTMAEConfig(**sizes, mask_ratio=0.75))  # as released; masking is off for items
    else:
        model = ViTModel(ViTConfig(**sizes), add_pooling_layer=False)
    model.save_pretrained(str(folder))
    (folder / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"height": image_size, "width": image_size}, "resample": 2,
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
        "image_processor_type": "ViTImageProcessor"}, indent=1))
    return folder
