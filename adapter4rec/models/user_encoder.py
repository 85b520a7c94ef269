"""SASRec user encoder (paper reference §2.2): learned absolute positions, post-LN Transformer blocks,
causal + key-padding mask, no final LayerNorm.

Sub-layers are named modules (attention `query/key/value/out`, feed-forward `fc1/fc2`, and each sub-layer's
residual + LayerNorm `SublayerOutput` with its dropout `drop`) so that adapters can find and wrap them by name,
exactly as in the Hugging Face item encoders (adapters/inject.py).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def init_weight(weight: torch.Tensor, std: float) -> None:
    """std 0: xavier_normal (the paper; std sqrt(2 / (fan_in + fan_out)), 0.08-0.13 at d = 64); else normal(0, std)
    (RecBole's 0.02: a post-LN transformer starts closer to the identity around each residual)."""
    if std:
        nn.init.normal_(weight, 0.0, std)
    else:
        nn.init.xavier_normal_(weight)


class SelfAttention(nn.Module):
    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.heads, self.dropout = heads, dropout
        self.query = nn.Linear(d, d, bias=False)
        self.key = nn.Linear(d, d, bias=False)
        self.value = nn.Linear(d, d, bias=False)
        self.out = nn.Linear(d, d, bias=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        b, length, d = x.shape
        split = lambda t: t.view(b, length, self.heads, d // self.heads).transpose(1, 2)  # (B, h, L, d/h)
        q, k, v = split(self.query(x)), split(self.key(x)), split(self.value(x))
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask,
                                             dropout_p=self.dropout if self.training else 0.0)
        return self.out(att.transpose(1, 2).reshape(b, length, d))


class FeedForward(nn.Module):
    def __init__(self, d: int):
        super().__init__()
        self.fc1 = nn.Linear(d, 4 * d)
        self.fc2 = nn.Linear(4 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class SublayerOutput(nn.Module):
    """out(hidden, input_tensor) = LN(input_tensor + Drop(hidden)): the residual + post-LN of a sub-layer, with
    the same signature as BERT's BertSelfOutput/BertOutput, so parallel adapters wrap both the same way."""

    def __init__(self, d: int, dropout: float):
        super().__init__()
        self.drop = nn.Dropout(dropout)
        self.norm = nn.LayerNorm(d, eps=1e-6)

    def forward(self, hidden: torch.Tensor, input_tensor: torch.Tensor) -> torch.Tensor:
        return self.norm(input_tensor + self.drop(hidden))


class Block(nn.Module):
    """x = LN(x + Drop(Attn(x))); x = LN(x + Drop(FFN(x)))  (post-LN, eps 1e-6 as in the paper's code)."""

    def __init__(self, d: int, heads: int, dropout: float):
        super().__init__()
        self.attention = SelfAttention(d, heads, dropout)
        self.attention_output = SublayerOutput(d, dropout)
        self.feed_forward = FeedForward(d)
        self.feed_forward_output = SublayerOutput(d, dropout)

    def forward(self, x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        x = self.attention_output(self.attention(x, mask), x)
        return self.feed_forward_output(self.feed_forward(x), x)


def attention_mask(valid: torch.Tensor) -> torch.Tensor:
    """(B, 1, L, L) bool, True = may attend: causal AND key is a real item.

    Each position may always attend to itself, so left-padding rows are never fully masked (no NaN); their
    outputs are never used."""
    length = valid.shape[1]
    causal = torch.ones(length, length, dtype=torch.bool, device=valid.device).tril()
    eye = torch.eye(length, dtype=torch.bool, device=valid.device)
    return ((causal & valid[:, None, None, :]) | eye).contiguous()


class SASRecEncoder(nn.Module):
    def __init__(self, d: int, max_len: int, blocks: int, heads: int, dropout: float, init_std: float = 0.0):
        super().__init__()
        self.position = nn.Embedding(max_len, d)
        self.input_norm = nn.LayerNorm(d, eps=1e-6)
        self.drop = nn.Dropout(dropout)
        self.blocks = nn.ModuleList(Block(d, heads, dropout) for _ in range(blocks))
        for module in self.modules():  # every Linear and Embedding, zero biases
            if isinstance(module, (nn.Linear, nn.Embedding)):
                init_weight(module.weight, init_std)
                if getattr(module, "bias", None) is not None:
                    nn.init.zeros_(module.bias)

    def forward(self, items: torch.Tensor, valid: torch.Tensor, all_layers: bool = False):
        """items: (B, L, d) item embeddings (left padded); valid: (B, L) bool. Returns (B, L, d), or with
        all_layers the list of every block's output (B, L, d)."""
        positions = torch.arange(items.shape[1], device=items.device)
        x = self.drop(self.input_norm(items + self.position(positions)))
        mask = attention_mask(valid)
        outputs = []
        for block in self.blocks:
            x = block(x, mask)
            outputs.append(x)
        return outputs if all_layers else x


class KAdapterUserEncoder(nn.Module):
    """The SASRec encoder with a K-Adapter side network fed by its blocks' outputs, under the SAME causal +
    padding mask (adapter4rec.adapters.kadapter)."""

    def __init__(self, base: SASRecEncoder, kadapter: nn.Module):
        super().__init__()
        self.base, self.kadapter = base, kadapter

    def forward(self, items: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
        return self.kadapter(self.base(items, valid, all_layers=True), attention_mask(valid))
