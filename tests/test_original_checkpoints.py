"""The original code's checkpoints (epoch-N.pt, `model_state_dict` in the original key layout) load into our
models and reproduce the source model's outputs exactly, for BERT, ViT and MAE item encoders; a checkpoint
that does not fit fails with an error naming the key.

The original layout is written here from the reference (original_system.md §8 and the original's
model/modules.py), by enumerating names, independently of adapter4rec.training.original's rules, so that a wrong
rule there cannot be mirrored here."""
from __future__ import annotations

import argparse
import copy

import pytest
import torch
import torch.nn.functional as F

from adapter4rec.config import parse_args
from adapter4rec.training.build import build_model, load_data
from adapter4rec.training.original import OriginalCheckpointError, is_original_checkpoint, load_original, \
    map_original_state_dict
from tests.conftest import tiny_args

# item-encoder prefixes of the original per family: (backbone, projection head)
ITEM_PREFIXES = {"text": ("bert_encoder.text_encoders.title.bert_model.", "bert_encoder.text_encoders.title.fc."),
                 "vit": ("cv_encoder.image_net.vit.", "cv_encoder.image_net.classifier."),
                 "mae": ("cv_encoder.image_net.", "cv_encoder.cv_proj.")}
# inside one original TransformerBlock: our sub-module name -> the original's
BLOCK_NAMES = {"attention.query.weight": "multi_head_attention.w_Q.weight",
               "attention.key.weight": "multi_head_attention.w_K.weight",
               "attention.value.weight": "multi_head_attention.w_V.weight",
               "attention.out.weight": "multi_head_attention.fc.weight",
               "attention_output.norm.weight": "multi_head_attention.layer_norm.weight",
               "attention_output.norm.bias": "multi_head_attention.layer_norm.bias",
               "feed_forward.fc1.weight": "feed_forward.w_1.weight", "feed_forward.fc1.bias": "feed_forward.w_1.bias",
               "feed_forward.fc2.weight": "feed_forward.w_2.weight", "feed_forward.fc2.bias": "feed_forward.w_2.bias",
               "feed_forward_output.norm.weight": "feed_forward.layer_norm.weight",
               "feed_forward_output.norm.bias": "feed_forward.layer_norm.bias"}


def original_names(own_keys, family: str, num_blocks: int) -> dict:
    """Our key -> the original's key, for every key of our (plain) model."""
    user = {"position.weight": "position_embedding.weight", "input_norm.weight": "layer_norm.weight",
            "input_norm.bias": "layer_norm.bias"}
    for i in range(num_blocks):
        user.update({f"blocks.{i}.{ours}": f"transformer_blocks.{i}.{orig}" for ours, orig in BLOCK_NAMES.items()})
    backbone, head = ITEM_PREFIXES[family]
    names = {}
    for key in own_keys:
        if key.startswith("user_encoder."):
            names[key] = "user_encoder.transformer_encoder." + user[key[len("user_encoder."):]]
        elif key.startswith("item_encoder.backbone."):
            names[key] = backbone + key[len("item_encoder.backbone."):]
        elif key.startswith("item_encoder.proj."):
            names[key] = head + key[len("item_encoder.proj."):]
        else:
            raise AssertionError(f"no original name for {key}")
    return names


def original_checkpoint(model, family: str, num_blocks: int, ddp: bool) -> dict:
    """What the original's torch.save wrote: weights in its layout (+ the HF 4.20 extras it carried),
    an AdamW state dict and the rng states."""
    own = model.state_dict()
    prefix = "module." if ddp else ""
    state = {prefix + orig: own[ours].clone() for ours, orig in original_names(own, family, num_blocks).items()}
    if family == "text":  # transformers 4.20 saved BERT's position_ids buffer and its (unused) pooler
        bert = prefix + ITEM_PREFIXES["text"][0]
        hidden = model.item_encoder.backbone.config.hidden_size
        state[bert + "embeddings.position_ids"] = torch.arange(64).unsqueeze(0)
        state[bert + "pooler.dense.weight"] = torch.randn(hidden, hidden)
        state[bert + "pooler.dense.bias"] = torch.randn(hidden)
    params = [p.detach().clone().requires_grad_() for p in model.parameters()]
    optimizer = torch.optim.AdamW(params, lr=1e-4)
    for p in params:
        p.grad = torch.ones_like(p)
    optimizer.step()
    return {"model_state_dict": state, "optimizer": optimizer.state_dict(), "rng_state": torch.get_rng_state(),
            "cuda_rng_state": torch.get_rng_state()}


def perturbed(model):
    """The model with every saved tensor moved off its initial value, so that a load that skips a key shows."""
    gen = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for value in model.state_dict().values():
            if value.is_floating_point():
                value.add_(0.05 * torch.randn(value.shape, generator=gen))
    return model.eval()


def outputs(model, data):
    with torch.no_grad():
        table = model.item_table()
        return table, model.user_states_from_table(data.split.test.history[:8], table)


def check_roundtrip(cfg, data, source, family, tmp_path, ddp):
    path = tmp_path / "epoch-3.pt"
    torch.save(original_checkpoint(source, family, cfg.num_blocks, ddp), path)
    torch.manual_seed(99)
    fresh = build_model(cfg, data).eval()
    want = outputs(source, data)
    assert not torch.equal(outputs(fresh, data)[0], want[0])
    report = load_original(fresh, path)
    for got, expected in zip(outputs(fresh, data), want):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)
    assert report["loaded"] == len(source.state_dict())
    assert (report["max_seq_len"], report["embedding_dim"], report["num_blocks"]) == \
        (cfg.max_seq_len, cfg.embedding_dim, cfg.num_blocks)
    assert report["ignored_entries"] == ["cuda_rng_state", "optimizer", "rng_state"]
    return fresh, report


@pytest.fixture(scope="module")
def text_setup(tiny_bert, tiny_data, tmp_path_factory):
    cfg = parse_args(tiny_args(tiny_bert, tiny_data / "source", tmp_path_factory.mktemp("orig"), dropout=0.0))
    data = load_data(cfg)
    torch.manual_seed(1)
    return cfg, data, perturbed(build_model(cfg, data))


@pytest.fixture(scope="module")
def image_setup(tmp_path_factory):
    from adapter4rec.data.synthetic.images import generate_images
    from adapter4rec.models.vit_init import write_vit_folder

    root = tmp_path_factory.mktemp("orig_images")
    generate_images(root, seed=5, preset="tiny")
    setups = {}
    for family in ("vit", "mae"):
        folder = write_vit_folder(root / family, hidden=32, layers=2, heads=2, image_size=32, patch_size=8,
                                  mae=family == "mae")
        args = dict(modality="image", dataset=str(root / "source"), item_encoder=str(folder),
                    output_dir=str(root / "out"), cache_dir=str(root / "cache"), max_seq_len=6, embedding_dim=16,
                    dropout=0.0, progress="false")
        cfg = parse_args([f"--{k}={v}" for k, v in args.items()])
        data = load_data(cfg)
        torch.manual_seed(2)
        setups[family] = cfg, data, perturbed(build_model(cfg, data))
    return setups


def test_text_checkpoint_with_ddp_prefix_reproduces_outputs(text_setup, tmp_path):
    cfg, data, source = text_setup
    _, report = check_roundtrip(cfg, data, source, "text", tmp_path, ddp=True)
    bert = "module." + ITEM_PREFIXES["text"][0]
    assert report["dropped"] == sorted(bert + k for k in ("embeddings.position_ids", "pooler.dense.weight",
                                                          "pooler.dense.bias"))


@pytest.mark.parametrize("family", ["vit", "mae"])
def test_image_checkpoint_reproduces_outputs(family, image_setup, tmp_path):
    cfg, data, source = image_setup[family]
    fresh, report = check_roundtrip(cfg, data, source, family, tmp_path, ddp=False)
    assert report["dropped"] == []
    if family == "mae":  # the original's parameter lands in our buffer (same key) and stays a buffer
        key = "item_encoder.backbone.embeddings.position_embeddings"
        assert key not in dict(fresh.named_parameters()) and key in dict(fresh.named_buffers())
        assert torch.equal(fresh.state_dict()[key], source.state_dict()[key])


def original_user_forward(state: dict, items: torch.Tensor, log_mask: torch.Tensor, heads: int, blocks: int):
    """The original TransformerEncoder's forward in eval mode, written from its modules.py over its own key
    layout: LN(items + pos); per block x = LN(x + fc(MHA)), x = LN(x + w_2(ReLU(w_1 x))); mask = tril AND
    key-is-real as 0 / -1e9; scores / sqrt(d_k)."""
    w = lambda name: state["user_encoder.transformer_encoder." + name]
    b, length, d = items.shape
    norm = lambda x, name: F.layer_norm(x, (d,), w(name + ".weight"), w(name + ".bias"), eps=1e-6)
    x = norm(items + w("position_embedding.weight")[:length], "layer_norm")
    mask = torch.where(torch.tril((log_mask != 0)[:, None, None, :].expand(-1, -1, length, -1)), 0.0, -1e9)
    for i in range(blocks):
        att, ffn = f"transformer_blocks.{i}.multi_head_attention.", f"transformer_blocks.{i}.feed_forward."
        q, k, v = ((x @ w(att + name + ".weight").T).view(b, length, heads, d // heads).transpose(1, 2)
                   for name in ("w_Q", "w_K", "w_V"))
        probs = torch.softmax(q @ k.transpose(-2, -1) / (d // heads) ** 0.5 + mask, dim=-1)
        x = norm(x + (probs @ v).transpose(1, 2).reshape(b, length, d) @ w(att + "fc.weight").T, att + "layer_norm")
        hidden = F.linear(F.relu(F.linear(x, w(ffn + "w_1.weight"), w(ffn + "w_1.bias"))),
                          w(ffn + "w_2.weight"), w(ffn + "w_2.bias"))
        x = norm(x + hidden, ffn + "layer_norm")
    return x


def test_user_encoder_computes_what_the_original_did_at_real_positions(text_setup):
    """The documented difference: only left-padding rows differ (the original's attend uniformly to every
    position, ours to themselves); they are never read by real rows and never scored."""
    cfg, _, source = text_setup
    state = original_checkpoint(source, "text", cfg.num_blocks, ddp=False)["model_state_dict"]
    items = torch.randn(4, cfg.max_seq_len, cfg.embedding_dim, generator=torch.Generator().manual_seed(4))
    valid = torch.arange(cfg.max_seq_len) >= torch.tensor([[0], [2], [5], [cfg.max_seq_len - 1]])  # left padded
    with torch.no_grad():
        ours = source.user_encoder(items, valid)
    theirs = original_user_forward(state, items, valid, cfg.num_heads, cfg.num_blocks)
    torch.testing.assert_close(ours[valid], theirs[valid], rtol=1e-5, atol=1e-5)
    assert not torch.allclose(ours[~valid], theirs[~valid], atol=1e-3)


def test_map_returns_unmapped_and_missing_keys(text_setup):
    cfg, _, source = text_setup
    state = original_checkpoint(source, "text", cfg.num_blocks, ddp=False)["model_state_dict"]
    gone = "user_encoder.transformer_encoder.transformer_blocks.1.feed_forward.w_2.bias"
    del state[gone]
    state["bert_encoder.text_encoders.title.extra_head.weight"] = torch.zeros(2)
    ours, unmapped, missing = map_original_state_dict(state, source)
    assert unmapped == ["bert_encoder.text_encoders.title.extra_head.weight"]
    assert missing == ["user_encoder.blocks.1.feed_forward.fc2.bias"]
    assert len(ours) == len(source.state_dict()) - 1


def broken(state: dict, how: str) -> tuple[dict, list[str]]:
    """A copy of an original state dict broken one way, and the strings the error must contain."""
    state = dict(state)
    if how == "extra":
        key = "module.user_encoder.transformer_encoder.extra.weight"
        state[key] = torch.zeros(3)
        return state, [key]
    if how == "missing":
        del state["module.user_encoder.transformer_encoder.transformer_blocks.0.multi_head_attention.w_K.weight"]
        return state, ["user_encoder.blocks.0.attention.key.weight", "without a value"]
    key = "module.user_encoder.transformer_encoder.position_embedding.weight"
    length, d = state[key].shape
    state[key] = torch.zeros(length, 2 * d)  # a checkpoint trained with another embedding size
    return state, [key, f"({length}, {2 * d})", f"({length}, {d})"]


@pytest.mark.parametrize("how", ["extra", "missing", "shape"])
def test_checkpoint_that_does_not_fit_names_the_key(how, text_setup, tmp_path):
    cfg, data, source = text_setup
    ckpt = original_checkpoint(source, "text", cfg.num_blocks, ddp=True)
    ckpt["model_state_dict"], needles = broken(ckpt["model_state_dict"], how)
    torch.save(ckpt, tmp_path / "epoch-3.pt")
    target = copy.deepcopy(source)
    with pytest.raises(OriginalCheckpointError) as err:
        load_original(target, tmp_path / "epoch-3.pt")
    for needle in needles:
        assert needle in str(err.value)


@pytest.mark.parametrize("family, into, says", [("text", "vit", r"text \(BERT/RoBERTa\).*image \(ViT\)"),
                                               ("mae", "vit", r"image \(MAE\).*image \(ViT\)")])
def test_checkpoint_of_another_item_encoder_says_which(family, into, says, text_setup, image_setup, tmp_path):
    cfg, _, source = text_setup if family == "text" else image_setup[family]
    torch.save(original_checkpoint(source, family, cfg.num_blocks, ddp=False), tmp_path / "epoch-3.pt")
    with pytest.raises(OriginalCheckpointError, match=says):
        load_original(copy.deepcopy(image_setup[into][2]), tmp_path / "epoch-3.pt")


def test_unsafe_or_foreign_files_are_refused_clearly(text_setup, tmp_path):
    _, _, source = text_setup
    torch.save({"model_state_dict": {}, "args": argparse.Namespace(lr=1.0)}, tmp_path / "pickled.pt")
    with pytest.raises(OriginalCheckpointError, match="other than tensors"):
        load_original(source, tmp_path / "pickled.pt")
    ours = {"format": "adapter4rec/1", "model": {}, "model_state_dict": {}}
    torch.save(ours, tmp_path / "ours.pt")
    with pytest.raises(OriginalCheckpointError, match="adapter4rec checkpoint"):
        load_original(source, tmp_path / "ours.pt")
    with pytest.raises(OriginalCheckpointError, match="does not exist"):
        load_original(source, tmp_path / "absent.pt")
    assert is_original_checkpoint({"model_state_dict": {}, "optimizer": {}})
    assert not is_original_checkpoint(ours) and not is_original_checkpoint([1])


def test_downstream_run_starts_from_an_original_checkpoint(text_setup, tiny_bert, tiny_data, tmp_path):
    """`source_checkpoint=epoch-N.pt` of the original code works in a real run, adapters included."""
    from pathlib import Path

    from adapter4rec.training.train import run

    cfg, _, model = text_setup
    path = tmp_path / "epoch-53.pt"
    torch.save(original_checkpoint(model, "text", cfg.num_blocks, ddp=True), path)
    args = tiny_args(tiny_bert, tiny_data / "target", tmp_path / "runs", stage="downstream", tune="peft",
                     adapter="houlsby", source_checkpoint=str(path), item_adapter_size=8, user_adapter_size=8)
    results = run(parse_args(args))
    assert results["test"]["users"] > 0
    log = (Path(results["run_dir"]) / "log.txt").read_text()
    assert "loaded an ORIGINAL Adapter4Rec checkpoint" in log
