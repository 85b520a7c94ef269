"""Item towers: item indices (n,) -> embeddings (n, d). The padding item 0 is never passed in.

TextItemEncoder: HF encoder over the item's tokens -> CLS hidden state -> Linear(hidden, d) -> GELU
(paper reference §2.4). The token table is a non-persistent buffer: it moves with the model but is not
saved in checkpoints (it is rebuilt from the items file and the tokenizer).

Frozen-backbone cache: when no backbone parameter trains (the frozen baseline, user-encoder-only adapters),
`cache_backbone()` runs the backbone once over every item and later calls only gather the cached CLS states
(the trainable head still runs). The cache is computed in eval mode, so the frozen backbone applies no
dropout; that is exact for evaluation and drops only the frozen part's dropout noise in training.
IdItemEncoder: a learned embedding per item (baseline; cannot transfer to new items).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adapter4rec.data.text import TokenTable, gather_tokens


def encode_catalogue(encode, num_items: int, device: torch.device, chunk: int = 512) -> torch.Tensor:
    """(num_items+1, h) fp32 rows encode(items) for items 1..num_items in chunks; row 0 (padding) = zeros."""
    ids = torch.arange(1, num_items + 1, device=device)
    parts = [encode(ids[i:i + chunk]).float() for i in range(0, len(ids), chunk)]
    return torch.cat([parts[0].new_zeros(1, parts[0].shape[1])] + parts)


class TextItemEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, tokens: TokenTable, d: int):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(backbone.config.hidden_size, d)
        self.register_buffer("token_ids", tokens.ids, persistent=False)
        self.register_buffer("token_lengths", tokens.lengths, persistent=False)
        self.cls_cache: torch.Tensor | None = None  # (num_items+1, hidden) when the backbone is frozen

    @property
    def num_items(self) -> int:
        return self.token_ids.shape[0] - 1

    def encode_cls(self, items: torch.Tensor) -> torch.Tensor:
        """(n, hidden) CLS states of the backbone for item indices `items` (n,)."""
        input_ids, attention_mask = gather_tokens(self.token_ids, self.token_lengths, items)
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, 0]

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        hidden = self.cls_cache[items] if self.cls_cache is not None else self.encode_cls(items)
        return F.gelu(self.proj(hidden))  # (n, d) from the CLS token

    @torch.no_grad()
    def cache_backbone(self, chunk: int = 512) -> bool:
        """Cache every item's CLS state if no backbone parameter trains; returns whether it did."""
        if any(p.requires_grad for p in self.backbone.parameters()):
            self.cls_cache = None
            return False
        was_training = self.backbone.training
        self.backbone.eval()
        self.cls_cache = encode_catalogue(self.encode_cls, self.num_items, self.token_ids.device, chunk)
        self.backbone.train(was_training)
        return True


class IdItemEncoder(nn.Module):
    def __init__(self, num_items: int, d: int):
        super().__init__()
        self.embedding = nn.Embedding(num_items + 1, d, padding_idx=0)
        nn.init.xavier_normal_(self.embedding.weight)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    @property
    def num_items(self) -> int:
        return self.embedding.num_embeddings - 1

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.embedding(items)
