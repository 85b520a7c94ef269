"""Image item encoders (ViT, MAE) on tiny configs, every adapter injected into a tiny ViT, and a tiny image
pretrain -> adapter transfer through the real CV launchers."""
from __future__ import annotations

import copy
import json
import re

import pytest
import torch

from adapter4rec.adapters.methods import add_adapters
from adapter4rec.adapters.prompt import VisualPromptBackbone
from adapter4rec.adapters.trainable import set_trainable
from adapter4rec.config import REPO_ROOT, parse_args
from adapter4rec.models.negatives import sample_negatives
from adapter4rec.models.pretrained import CheckpointFolderError, image_spec, load_backbone
from adapter4rec.training.build import build_model, load_data
from adapter4rec.training.train import build_optimizer
from tests.test_end_to_end import launch

# modules changed per encoder on a 2-layer ViT and a 2-block SASRec
EXPECTED_CHANGES = {"houlsby": 4, "parallel": 4, "pfeiffer": 2, "compacter": 4, "lora": 4, "kadapter": 1}
TRAINABLE = {"houlsby": r"\.adapter\.(down|up)\.", "parallel": r"\.adapter\.(down|up)\.",
             "compacter": r"(\.adapter\.(down|up)\.(left|right|bias)$"  # one rule per encoder, inside it
                           r"|^(item_encoder\.backbone|user_encoder)\.compacter_rule\.weight$)",
             "lora": r"\.lora_[AB]$", "kadapter": r"\.kadapter\.", "prompt": r"\.prompt\.embeddings$"}


def image_config(encoder, data, out, **overrides):
    args = dict(modality="image", dataset=str(data / "target"), item_encoder=str(encoder), output_dir=str(out),
                cache_dir=str(out / "cache"), epochs=1, batch_size=16, max_seq_len=8, embedding_dim=16,
                progress="false", stage="downstream", tune="peft", kadapter_item_heads=2, item_adapter_size=8,
                user_adapter_size=8, dropout=0.0, adapter_dropout=0.0)
    args.update(overrides)
    return parse_args([f"--{k}={v}" for k, v in args.items()])


@pytest.fixture(scope="module")
def vit_model(tiny_vit, tiny_image_data, tmp_path_factory):
    cfg = image_config(tiny_vit, tiny_image_data, tmp_path_factory.mktemp("vit_runs"))
    data = load_data(cfg)
    torch.manual_seed(0)
    return build_model(cfg, data).eval(), data, cfg


def outputs(model, data):
    with torch.no_grad():
        table = model.item_table()
        return table, model.user_states_from_table(data.split.test.history[:8], table)


def adapted(vit_model, **overrides):
    model, data, cfg = vit_model
    cfg = image_config(cfg.item_encoder, cfg.resolve(cfg.dataset).parent, cfg.resolve(cfg.output_dir), **overrides)
    model = copy.deepcopy(model)
    changed = add_adapters(model, cfg)
    set_trainable(model, cfg)
    return model.eval(), changed, cfg


def test_vit_encoder_reads_pixels_and_spec(vit_model, tiny_vit):
    model, data, _ = vit_model
    spec = image_spec(tiny_vit, model.item_encoder.backbone.config)
    assert (spec.height, spec.width, spec.mean, spec.std) == (32, 32, (0.5,) * 3, (0.5,) * 3)
    table, _ = outputs(model, data)
    assert table.shape == (len(data.catalog) + 1, 16) and torch.all(table[0] == 0)
    assert len(torch.unique(table[1:].round(decimals=5), dim=0)) == len(data.catalog)  # pixels differ per item


def test_image_classification_checkpoint_loads_as_vit(tmp_path):
    from transformers import ViTConfig, ViTForImageClassification

    torch.manual_seed(0)
    config = ViTConfig(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                       image_size=32, patch_size=8, num_labels=5)
    classifier = ViTForImageClassification(config)
    classifier.save_pretrained(str(tmp_path / "vit-cls"))
    backbone = load_backbone(tmp_path / "vit-cls", "image")
    assert type(backbone).__name__ == "ViTModel"
    torch.testing.assert_close(backbone.encoder.layer[1].output.dense.weight,
                               classifier.vit.encoder.layer[1].output.dense.weight, rtol=0, atol=0)
    with pytest.raises(CheckpointFolderError, match="cannot encode text items"):
        load_backbone(tmp_path / "vit-cls", "text")


def test_mae_encodes_every_patch_deterministically(tiny_mae, tiny_image_data, tmp_path):
    cfg = image_config(tiny_mae, tiny_image_data, tmp_path)
    data = load_data(cfg)
    model = build_model(cfg, data).eval()
    backbone = model.item_encoder.backbone
    assert backbone.config.mask_ratio == 0.0
    assert "embeddings.position_embeddings" in dict(backbone.named_buffers())  # fixed sin-cos table, never trained
    ids = torch.arange(1, 9)
    pixels = (model.item_encoder.pixels.gather(ids).float() / 255 - 0.5) / 0.5
    noise = torch.arange(16, dtype=torch.float).expand(8, -1)
    assert backbone(pixel_values=pixels, noise=noise).last_hidden_state.shape[1] == 1 + 16  # no patch dropped
    rng = torch.get_rng_state()
    with torch.no_grad():
        first, second = model.item_encoder(ids), model.item_encoder(ids)
    assert torch.equal(first, second)
    assert torch.equal(rng, torch.get_rng_state())  # no random masking drew numbers


@pytest.mark.parametrize("method", list(EXPECTED_CHANGES))
def test_vit_adapters_identity_at_init_and_counts(method, vit_model):
    model, changed, _ = adapted(vit_model, adapter=method)
    assert {side: len(names) for side, names in changed.items()} == {"item": EXPECTED_CHANGES[method],
                                                                     "user": EXPECTED_CHANGES[method]}
    for got, want in zip(outputs(model, vit_model[1]), outputs(*vit_model[:2])):
        torch.testing.assert_close(got, want, rtol=0, atol=1e-6)


@pytest.mark.parametrize("method", list(TRAINABLE))
def test_vit_only_adapters_change(method, vit_model):
    extra = dict(adapter_where="item") if method == "prompt" else {}
    model, _, cfg = adapted(vit_model, adapter=method, item_adapter_lr=1e-2, user_adapter_lr=1e-2, **extra)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert trainable and all(re.search(TRAINABLE[method], n) for n in trainable)
    optimizer = build_optimizer(model, cfg)
    model.train()
    train = vit_model[1].split.train
    for step in range(3):
        seqs = train[step * 16:(step + 1) * 16]
        loss = model(seqs, sample_negatives(seqs, model.num_items, torch.Generator().manual_seed(step)))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    changed = {k for k, v in model.state_dict().items() if not torch.equal(before[k], v)}
    assert changed <= trainable, sorted(changed - trainable)[:5]
    assert len(changed) >= len(trainable) // 2


def test_vit_parallel_adapter_is_not_a_silent_no_op(vit_model):
    """ViTSelfOutput ignores its input_tensor: the adapter must reach the output of both sub-layers."""
    model, changed, _ = adapted(vit_model, adapter="parallel", adapter_where="item", adapter_sublayers="attention")
    reference, _ = outputs(model, vit_model[1])
    with torch.no_grad():
        for name, param in model.named_parameters():
            if ".adapter.up." in name:
                param.normal_(0, 0.5)
    table, _ = outputs(model, vit_model[1])
    assert (table - reference).abs().max() > 1e-3


def test_visual_prompt_without_tokens_is_the_plain_vit(vit_model):
    backbone = vit_model[0].item_encoder.backbone
    wrapped = VisualPromptBackbone(backbone, 0).eval()
    pixels = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(wrapped(pixel_values=pixels).last_hidden_state,
                                   backbone(pixel_values=pixels).last_hidden_state, rtol=0, atol=1e-6)
        assert VisualPromptBackbone(backbone, 3)(pixel_values=pixels).last_hidden_state.shape[1] == 1 + 3 + 16


def test_frozen_vit_cache_is_exact_in_eval(vit_model):
    model, _, _ = adapted(vit_model, adapter="none", train_head=True)
    reference, _ = outputs(model, vit_model[1])
    assert model.item_encoder.cache_backbone()
    cached, _ = outputs(model, vit_model[1])
    torch.testing.assert_close(cached, reference, rtol=0, atol=1e-6)


def test_image_pretrain_then_adapter_and_side_transfer_through_launchers(tiny_vit, tiny_image_data, tmp_path):
    out, cwd = tmp_path / "runs", tmp_path / "elsewhere"
    cwd.mkdir()
    common = [f"--item_encoder={tiny_vit}", f"--output_dir={out}", f"--cache_dir={tmp_path / 'cache'}",
              "--epochs=1", "--batch_size=32", "--progress=false", "--embedding_dim=32"]
    launch(REPO_ROOT / "Pretraining" / "CV" / "script" / "sm_vit_sasrec.py",
           f"--dataset={tiny_image_data / 'source'}", *common, cwd=cwd)
    source = out / "sm_vit_sasrec" / "best.pt"
    launch(REPO_ROOT / "Downstream" / "CV" / "script" / "sm_vit_adapter.py", f"--dataset={tiny_image_data / 'target'}",
           f"--source_checkpoint={source}", "--item_adapter_size=8", *common, cwd=cwd)
    results = json.loads((out / "sm_vit_adapter" / "results.json").read_text())
    assert results["test"]["users"] == results["data"]["test_users"] > 0
    assert 0 < results["trainable_params"] < 0.2 * results["total_params"]
    adapter_ckpt = torch.load(out / "sm_vit_adapter" / "best.pt", weights_only=True)
    assert adapter_ckpt["kind"] == "trainable"
    assert all(".adapter." in k for k in adapter_ckpt["model"])
    config = json.loads((out / "sm_vit_adapter" / "config.json").read_text())
    assert (config["modality"], config["max_seq_len"], config["adapter"]) == ("image", 10, "houlsby")
    # the same source through the side-network launcher: side network + user Houlsby adapters only
    launch(REPO_ROOT / "Downstream" / "CV" / "script" / "sm_vit_side.py", f"--dataset={tiny_image_data / 'target'}",
           f"--source_checkpoint={source}", "--item_adapter_size=8", *common, cwd=cwd)
    side = json.loads((out / "sm_vit_side" / "results.json").read_text())
    assert side["test"]["users"] == side["data"]["test_users"] > 0 and side["data"]["state_cache"]["bytes"] > 0
    names = sorted(torch.load(out / "sm_vit_side" / "best.pt", weights_only=True)["model"])
    assert any(n.startswith("item_encoder.side.") for n in names) and any(".adapter." in n for n in names)
    assert all(n.startswith("item_encoder.side.") or n.startswith("user_encoder.") and ".adapter." in n
               for n in names), names


@pytest.mark.parametrize("layernorm_only", [False, True])
def test_vit_frozen_prefix_cache_is_exact_in_eval(vit_model, layernorm_only):
    """Adapters in the top layer (or only the final LayerNorm trains): the frozen bottom is encoded once."""
    overrides = dict(adapter="none", tune_layernorm=True, adapter_where="item") if layernorm_only else \
        dict(adapter="houlsby", adapter_layers=1, adapter_where="item")
    model, _, _ = adapted(vit_model, **overrides)
    if layernorm_only:  # only the final norm may train for the cache to reach the top: freeze the others
        for name, param in model.item_encoder.backbone.named_parameters():
            param.requires_grad = name.startswith("layernorm.")
    with torch.no_grad():
        for param in (p for p in model.parameters() if p.requires_grad):
            param.add_(torch.randn_like(param) * 0.05)
    want, _ = outputs(model, vit_model[1])
    cached = model.item_encoder.cache_backbone()
    assert f"the {2 if layernorm_only else 1} frozen bottom layer" in cached
    got, _ = outputs(model, vit_model[1])
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_two_process_image_run_shares_one_pixel_cache(tiny_vit, tiny_image_data, tmp_path):
    """Under torchrun with 2 processes: one process decodes the images (2 DataLoader workers over the LMDB),
    the other waits for the cache; both train and every test user is counted once."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(key, None)
    args = [f"--dataset={tiny_image_data / 'source'}", f"--item_encoder={tiny_vit}", f"--output_dir={tmp_path}",
            f"--cache_dir={tmp_path / 'cache'}", "--run_name=ddp", "--epochs=1", "--max_steps_per_epoch=2",
            "--num_workers=2", "--batch_size=16", "--embedding_dim=16", "--progress=false", "--device=cpu"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                           str(REPO_ROOT / "Pretraining" / "CV" / "run.py"), *args], cwd=REPO_ROOT, env=env,
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert len(list((tmp_path / "cache").glob("pixels-*.bin"))) == 1
    results = json.loads((tmp_path / "ddp" / "results.json").read_text())
    assert results["test"]["users"] == results["data"]["test_users"] > 0
    assert "world size 2" in (tmp_path / "ddp" / "log.txt").read_text()


def test_an_image_tower_fuses_target_ids_and_leaves_cold_items_to_their_pixels(tiny_vit, tiny_image_data, tmp_path):
    """item_tower=fused over ViT with a side network and the MoE head: IDs join the image path, items held out of
    training keep the image vector, and the ID table and fusion train under tune=peft."""
    cfg = image_config(tiny_vit, tiny_image_data, tmp_path, item_tower="fused", item_fusion="gate",
                       item_head="moe", head_experts=2, cold_items=0.3, adapter="side", side_layers="1",
                       adapter_where="item")
    data = load_data(cfg)
    torch.manual_seed(0)
    model = build_model(cfg, data)
    add_adapters(model, cfg)
    set_trainable(model, cfg)
    encoder = model.item_encoder.eval()
    with torch.no_grad():
        torch.nn.init.normal_(encoder.id_fusion.embedding.weight)  # trained IDs, as after some steps
        torch.nn.init.normal_(encoder.id_fusion.mix.weight)
        items = torch.arange(1, len(data.catalog) + 1)
        fused = encoder(items)
        with encoder.without_catalogue():
            pixels = encoder(items)
    never = data.split.window_counts[1:] == 0
    assert never.any() and (~never).any()
    torch.testing.assert_close(fused[never], pixels[never])
    assert not torch.allclose(fused[~never], pixels[~never], atol=1e-3)
    trains = {name for name, p in model.named_parameters() if p.requires_grad}
    assert {"item_encoder.id_fusion.embedding.weight", "item_encoder.id_fusion.mix.weight"} <= trains
    assert not any(name.startswith("item_encoder.backbone.") for name in trains)
