"""Item towers: item indices (n,) -> embeddings (n, d). The padding item 0 is never passed in.

TextItemEncoder: HF encoder over the item's tokens -> CLS hidden state -> Linear(hidden, d) -> GELU
(paper reference §2.4). The token table is a non-persistent buffer: it moves with the model but is not
saved in checkpoints (it is rebuilt from the items file and the tokenizer).
IdItemEncoder: a learned embedding per item (baseline; cannot transfer to new items).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from adapter4rec.data.text import TokenTable, gather_tokens


class TextItemEncoder(nn.Module):
    def __init__(self, backbone: nn.Module, tokens: TokenTable, d: int):
        super().__init__()
        self.backbone = backbone
        self.proj = nn.Linear(backbone.config.hidden_size, d)
        self.register_buffer("token_ids", tokens.ids, persistent=False)
        self.register_buffer("token_lengths", tokens.lengths, persistent=False)

    @property
    def num_items(self) -> int:
        return self.token_ids.shape[0] - 1

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        input_ids, attention_mask = gather_tokens(self.token_ids, self.token_lengths, items)
        hidden = self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return F.gelu(self.proj(hidden[:, 0]))  # (n, d) from the CLS token


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
