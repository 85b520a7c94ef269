"""The original's per-slot item encoding, kept ONLY as the benchmark's baseline.

The original Adapter4Rec runs every slot of every sequence through BERT — padding items (all-zero attention
mask) and repeated items included — with every title padded to the fixed token budget (30). This subclass
reproduces that work pattern on our model so both paths are timed on the same code and data.
(Our bce batch has B x (2L+1) slots: the positive window and one negative per target; the original's
B x (L+1) x 2 differs by B slots.)
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from adapter4rec.models.recommender import Recommender


class PerSlotRecommender(Recommender):
    def __init__(self, base: Recommender, title_tokens: int):
        super().__init__(base.item_encoder, base.user_encoder, base.arch, base.loss_name)
        self.log_popularity = base.log_popularity
        self.title_tokens = title_tokens

    def encode_distinct(self, ids: torch.Tensor):
        enc = self.item_encoder
        flat = ids.reshape(-1)                                           # every slot, padding included
        width = self.title_tokens
        input_ids = torch.zeros(len(flat), width, dtype=torch.long, device=flat.device)
        have = min(width, enc.token_ids.shape[1])
        input_ids[:, :have] = enc.token_ids[flat, :have].long()
        mask = (torch.arange(width, device=flat.device) < enc.token_lengths[flat].unsqueeze(1)).long()
        hidden = enc.backbone(input_ids=input_ids, attention_mask=mask).last_hidden_state[:, 0]
        emb = F.gelu(enc.proj(hidden))
        emb = emb * (flat > 0).unsqueeze(1).to(emb.dtype)                # padding slots carry no embedding
        table = torch.cat([emb.new_zeros(1, emb.shape[1]), emb])
        inverse = torch.arange(1, len(flat) + 1, device=flat.device).view(ids.shape)
        return table, inverse, flat
