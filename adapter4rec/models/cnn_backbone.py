"""A CNN as an image item backbone: EfficientNet-Lite0 (ImageNet), a cheap baseline beside the ViTs.

The image item tower (models/item_encoders.ImageItemEncoder) reads a backbone with a HF-like `config`
(model_type, hidden_size, num_hidden_layers, image_size, patch_size) whose forward(pixel_values=...) returns
`last_hidden_state` (n, 1 + patches, hidden). `CnnBackbone` gives a CNN that interface, so the tower, its head,
the frozen-state cache (every item's pooled feature computed once) and full fine-tuning run on it unchanged:
- the final feature map (n, 1280, H/32, W/32) becomes 1 + (H/32)(W/32) tokens: first its global average (the
  CNN's own pooled feature, in the place a ViT's CLS takes), then the cells. So item_pooling=cls and =mean both
  give the global-average-pooled feature; `patch_size` is the network's total stride, 32.
- hidden_states, when asked for: (None, output). A CNN has no stack of equal-width layers, so only the output is
  defined; what reads the others (side network, K-Adapter, every in-layer adapter) is refused for a CNN
  (`refuse_settings`), before any pixel is decoded.
A folder is a CNN folder when its config.json has model_type `efficientnet_lite` (pretrained_models/
place_efficientnet.py writes it). The model code is the PyPI package efficientnet-lite-pytorch (Apache-2.0), an
optional dependency imported only here, only when such a folder is used.
"""
from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from adapter4rec.errors import UserError

CNN_TYPE = "efficientnet_lite"
ARCHITECTURES = ("efficientnet-lite0",)  # what place_efficientnet.py places; the package knows lite0..lite4
PIN = "efficientnet-lite-pytorch==0.1.0"
PLACER = "pretrained_models/place_efficientnet.py"


def cnn_config(folder: Path) -> dict | None:
    """The folder's config.json when it describes a CNN backbone, else None (a HF checkpoint)."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None  # the HF loader reports an unreadable config itself
    return config if isinstance(config, dict) and config.get("model_type") == CNN_TYPE else None


def refuse_settings(cfg, folder: Path) -> None:
    """One line for the settings a CNN item backbone cannot run: every item-encoder PEFT method (adapters, LoRA,
    K-Adapter, prompts, the side network: they go into or read transformer layers) and BitFit (a CNN's biases are
    its BatchNorm shifts, not the paper's method). Adapters in the user encoder alone work unchanged."""
    if cfg.adapter != "none" and cfg.adapter_where != "user":  # (side and prompt are never adapter_where=user)
        raise UserError(f"adapter={cfg.adapter} with adapter_where={cfg.adapter_where}: {folder.name} is a CNN "
                        f"({CNN_TYPE}), and every item-encoder adapter, LoRA, prompt and side network needs "
                        f"transformer layers; use tune=all, the frozen CNN (tune=peft train_head=true, optionally "
                        f"train_user_encoder=true) or adapter_where=user")
    if cfg.tune == "peft" and cfg.tune_bias:
        raise UserError(f"tune_bias=true: {folder.name} is a CNN ({CNN_TYPE}) whose biases are BatchNorm shifts; "
                        f"BitFit is supported for transformer item encoders only")


class CnnBackbone(nn.Module):
    """`net.extract_features(pixels)` -> (n, C, h, w) as a ViT-like backbone (see the module docstring)."""

    def __init__(self, net: nn.Module, config: SimpleNamespace):
        super().__init__()
        self.net, self.config = net, config

    def forward(self, pixel_values: torch.Tensor, output_hidden_states: bool = False, **_ignored) -> BaseModelOutput:
        # _ignored: interpolate_pos_encoding — a CNN reads any multiple of its stride, it has no position table
        maps = self.net.extract_features(pixel_values)             # (n, C, h, w)
        cells = maps.flatten(2).transpose(1, 2)                    # (n, h*w, C)
        out = torch.cat([cells.mean(1, keepdim=True), cells], 1)   # the pooled feature first, as a CLS
        return BaseModelOutput(last_hidden_state=out, hidden_states=(None, out) if output_hidden_states else None)

    def train(self, mode: bool = True):
        super().train(mode)
        # A frozen CNN keeps its BatchNorm statistics: in training mode BatchNorm would normalise by each batch's
        # statistics and overwrite the running ones, changing a network none of whose parameters trains.
        if mode and not any(p.requires_grad for p in self.parameters()):
            self.net.eval()
        return self


def make_config(raw: dict, folder: Path) -> SimpleNamespace:
    """The HF-like config the item tower reads, from the folder's config.json."""
    try:
        return SimpleNamespace(model_type=CNN_TYPE, architecture=raw["architecture"],
                               hidden_size=int(raw["hidden_size"]), num_hidden_layers=1,
                               image_size=int(raw["image_size"]), patch_size=int(raw["stride"]))
    except (KeyError, TypeError, ValueError) as err:
        raise UserError(f"{folder / 'config.json'}: a {CNN_TYPE} config needs architecture, hidden_size, "
                        f"image_size and stride ({err!r}); place it again ({PLACER} --force)") from None


def load_cnn_backbone(folder: Path, raw: dict) -> CnnBackbone:
    """The CNN of `folder` (config.json + model.safetensors, without the ImageNet classifier) as a CnnBackbone."""
    from safetensors.torch import load_file

    config = make_config(raw, folder)
    if config.architecture not in ARCHITECTURES:
        raise UserError(f"{folder / 'config.json'}: architecture {config.architecture!r}; expected one of "
                        f"{', '.join(ARCHITECTURES)}")
    try:
        from efficientnet_lite_pytorch import EfficientNet
    except ImportError:
        raise UserError(f"{folder.name} needs the package {PIN}: run `make encoders` (or pip install --no-deps "
                        f"{PIN})") from None
    # image_size=None: TF-style "same" padding computed per input, so any multiple of the stride runs
    net = EfficientNet.from_name(config.architecture, image_size=None)
    net._fc = nn.Identity()  # the ImageNet classifier: our head replaces it, and it must not count as trainable
    weights = folder / "model.safetensors"
    if not weights.is_file():
        raise UserError(f"{folder}: model.safetensors is missing; place it with `make encoders`")
    missing, unexpected = net.load_state_dict(load_file(str(weights)), strict=False)
    if missing or unexpected:
        raise UserError(f"{weights}: not the weights of {config.architecture} (missing {missing[:3]}, unexpected "
                        f"{unexpected[:3]}); place it again ({PLACER} --force)")
    width = net._bn1.num_features
    if width != config.hidden_size:
        raise UserError(f"{folder / 'config.json'}: hidden_size {config.hidden_size}, the network's features {width}")
    return CnnBackbone(net, config)
