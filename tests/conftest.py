"""Shared fixtures: a tiny BERT checkpoint folder (built offline, word-level vocab from the synthetic
generator) and the tiny synthetic two-domain dataset. Nothing is downloaded."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
torch.set_num_threads(min(2, os.cpu_count() or 1))

SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def make_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0, init_range: float = 0.02) -> Path:
    """A BertModel checkpoint folder (config, safetensors weights, WordPiece tokenizer) of a tiny size."""
    from transformers import BertConfig, BertModel, BertTokenizerFast

    from adapter4rec.data.synthetic.text import vocabulary

    folder.mkdir(parents=True, exist_ok=True)
    vocab = folder / "vocab.txt"
    vocab.write_text("\n".join(SPECIAL + vocabulary()) + "\n")
    tokenizer = BertTokenizerFast(vocab_file=str(vocab), do_lower_case=True)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(seed)
    config = BertConfig(vocab_size=len(SPECIAL) + len(vocabulary()), hidden_size=hidden, num_hidden_layers=layers,
                        num_attention_heads=2, intermediate_size=2 * hidden, max_position_embeddings=64,
                        initializer_range=init_range)
    BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Folder with source/{users,items}.tsv and target/{users,items}.tsv (tiny preset)."""
    from adapter4rec.data.synthetic.text import generate

    root = tmp_path_factory.mktemp("data")
    generate(root, seed=11, preset="tiny")
    return root


def tiny_args(tiny_bert: Path, dataset: Path, out: Path, **overrides) -> list[str]:
    """Command-line arguments of a fast CPU run over the tiny data and the tiny BERT."""
    args = dict(dataset=str(dataset), item_encoder=str(tiny_bert), output_dir=str(out), epochs=1,
                batch_size=16, max_seq_len=8, embedding_dim=16, progress="false", max_title_tokens=16,
                cache_dir=str(out / "cache"))
    args.update(overrides)
    return [f"--{k}={v}" for k, v in args.items()]


@pytest.fixture(scope="session")
def tiny_image_data(tmp_path_factory):
    from adapter4rec.data.synthetic.images import generate_images

    root = tmp_path_factory.mktemp("image_data")
    generate_images(root, seed=5, preset="tiny")
    return root


@pytest.fixture(scope="session")
def tiny_vit(tmp_path_factory):
    from adapter4rec.models.vit_init import write_vit_folder

    return write_vit_folder(tmp_path_factory.mktemp("models") / "vit", hidden=32, layers=2, heads=2, image_size=32,
                            patch_size=8)


@pytest.fixture(scope="session")
def tiny_mae(tmp_path_factory):
    from adapter4rec.models.vit_init import write_vit_folder

    return write_vit_folder(tmp_path_factory.mktemp("models") / "mae", hidden=32, layers=2, heads=2, image_size=32,
                            patch_size=8, mae=True)
