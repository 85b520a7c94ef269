"""Prompt tuning of the item encoder: n learned tokens inserted right after [CLS]; the CLS state, which the
item tower reads, attends to them.

Text (Lester et al. 2021): every title token is kept (the original overwrote the first n title tokens, so
with its defaults all items had the same input). Images (VPT-shallow, Jia et al. 2022): the prompts join
the patch tokens after the position embeddings, before the first layer.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from transformers.modeling_outputs import BaseModelOutput

from adapter4rec.adapters.bottleneck import AdapterModule


class PromptTokens(AdapterModule):
    def __init__(self, init: torch.Tensor):
        super().__init__()
        self.embeddings = nn.Parameter(init.clone())  # (n, hidden)


class PromptBackbone(nn.Module):
    """Wraps a Hugging Face text encoder; same call signature as the encoder."""

    def __init__(self, base: nn.Module, n_tokens: int, generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        self.config = base.config
        words = base.get_input_embeddings().weight
        # start from the embeddings of random vocabulary tokens (a common prompt-tuning initialisation)
        rows = torch.randint(0, words.shape[0], (n_tokens,), generator=generator)
        self.prompt = PromptTokens(words.detach()[rows])

    def forward(self, input_ids=None, attention_mask=None, **kwargs):
        embeds = self.base.get_input_embeddings()(input_ids)             # (n, T, h)
        prompt = self.prompt.embeddings.to(embeds.dtype).expand(embeds.shape[0], -1, -1)
        embeds = torch.cat([embeds[:, :1], prompt, embeds[:, 1:]], dim=1)  # [CLS] P_1..P_n title...
        if attention_mask is None:
            attention_mask = torch.ones(input_ids.shape, dtype=torch.long, device=input_ids.device)
        ones = attention_mask.new_ones(attention_mask.shape[0], prompt.shape[1])
        attention_mask = torch.cat([attention_mask[:, :1], ones, attention_mask[:, 1:]], dim=1)
        return self.base(inputs_embeds=embeds, attention_mask=attention_mask, **kwargs)


class VisualPromptBackbone(nn.Module):
    """Wraps a ViTModel / ViTMAEModel; same call signature (pixel_values, and noise for MAE)."""

    def __init__(self, base: nn.Module, n_tokens: int, generator: torch.Generator | None = None):
        super().__init__()
        self.base = base
        self.config = base.config
        patch, hidden = base.config.patch_size, base.config.hidden_size
        bound = math.sqrt(6.0 / (3 * patch * patch + hidden))  # VPT's Xavier-uniform range over a patch
        init = (torch.rand(n_tokens, hidden, generator=generator) * 2 - 1) * bound
        self.prompt = PromptTokens(init)

    def forward(self, pixel_values=None, noise=None, interpolate_pos_encoding=False, **kwargs):
        size = {"interpolate_pos_encoding": interpolate_pos_encoding}  # another input size than the checkpoint's
        if self.config.model_type == "vit_mae":
            embeds = self.base.embeddings(pixel_values, noise=noise, **size)[0]  # (embeddings, mask, ids_restore)
        else:
            embeds = self.base.embeddings(pixel_values, **size)                  # (n, 1 + patches, h)
        prompt = self.prompt.embeddings.to(embeds.dtype).expand(embeds.shape[0], -1, -1)
        hidden = self.base.encoder(torch.cat([embeds[:, :1], prompt, embeds[:, 1:]], dim=1))[0]
        return BaseModelOutput(last_hidden_state=self.base.layernorm(hidden))
