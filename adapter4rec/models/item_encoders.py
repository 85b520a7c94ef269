"""Item towers: item indices (n,) -> embeddings (n, d). The padding item 0 is never passed in.

TextItemEncoder: HF encoder over the item's tokens -> CLS hidden state (or the mean over the item's real
tokens: item_pooling) -> the head: Linear(hidden, d) -> GELU (paper reference §2.4), or a whitening MoE
(item_head; models/item_heads.py) -> with item_tower=fused, the target ID embedding fused in (models/fusion.py).
The token table is a non-persistent buffer: it moves with the model but is not saved in checkpoints (it is
rebuilt from the items file and the tokenizer).
ImageItemEncoder: the same over ViT/MAE and the item's pixels (§2.5): CLS of the final-LayerNorm output
(or the mean of its patch tokens). Mean pooling reads only the item's own tokens, never prompt tokens. Pixels of
another size than the checkpoint's image_size (config image_size) run with its position table interpolated.

Frozen-backbone caches (`cache_backbone(store)`, one mechanism: states/): with a side network (adapter=side)
the backbone's pooled states at the side network's layers (the side network's own inputs); otherwise the frozen
path (models/frozen_path.py): when no backbone parameter trains (the frozen baseline, user-encoder-only adapters)
its pooled output, when only its top layers train the hidden states below them. Later calls gather rows by item
id; the trainable part still runs.
Caches are computed in eval mode, so the frozen part applies no dropout; that is exact for evaluation and drops
only the frozen part's dropout noise in training. A side network without a cache runs the backbone in eval
mode too, so both paths compute the same function.
IdItemEncoder: a learned embedding per item (baseline; cannot transfer to new items).
"""
from __future__ import annotations

from contextlib import contextmanager

import torch
from torch import nn

from adapter4rec.data.images import ImageSpec, PixelTable
from adapter4rec.data.store import CacheError, MemoryStore, on_device
from adapter4rec.data.text import TokenTable, gather_tokens, token_mask
from adapter4rec.models.frozen_path import PooledRows, PrefixCache, frozen_path, pool_states
from adapter4rec.models.fusion import IdFusion
from adapter4rec.models.item_heads import make_head
from adapter4rec.models.user_encoder import init_weight  # one init rule for the ID table and SASRec
from adapter4rec.states.layers import estimate_bytes, layer_state_table, tensor_digest


def encode_catalogue(encode, num_items: int, device: torch.device, chunk: int = 512) -> torch.Tensor:
    """(num_items+1, h) fp32 rows encode(items) for items 1..num_items in chunks; row 0 (padding) = zeros."""
    ids = torch.arange(1, num_items + 1, device=device)
    parts = [encode(ids[i:i + chunk]).float() for i in range(0, len(ids), chunk)]
    return torch.cat([parts[0].new_zeros(1, parts[0].shape[1])] + parts)


class ContentItemEncoder(nn.Module):
    """backbone(content of items) -> pooled state -> head (n, d) [-> ID fusion]. Subclasses say how an item's
    content reaches the backbone (`encode_states`)."""

    def __init__(self, backbone: nn.Module, d: int, pooling: str = "cls", head: str = "linear", experts: int = 8):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"item_pooling={pooling!r}: expected cls or mean")
        self.backbone, self.pooling = backbone, pooling
        self.proj = make_head(head, backbone.config.hidden_size, d, experts)  # item_heads.py: the item tower's head
        self.id_fusion: IdFusion | None = None        # item_tower=fused: the target's ID table and how it joins
        self.frozen: PooledRows | PrefixCache | None = None  # the backbone's frozen part, cached (frozen_path.py)
        self.side = None                              # adapters/side.py SideNetwork (and its cached inputs)
        self.cache_report: dict = {}                  # the last cache_backbone()'s record: hit, seconds, bytes

    def encode_states(self, items: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | int]:
        """(last-layer states (n, T', h), real-token mask (n, T), or the number of patches of an image)."""
        raise NotImplementedError

    def encode_all_states(self, items: torch.Tensor):
        """(every layer's states: a tuple of L+1 (n, T', h) with the embeddings' first, the output (n, T', h),
        the mask or number of patches) — the side network's inputs."""
        raise NotImplementedError

    def input_digest(self) -> str:
        """A digest of what the backbone reads for every item (the cache key's input part)."""
        raise NotImplementedError

    def pool(self, hidden: torch.Tensor, mask, pooling: str | None = None) -> torch.Tensor:
        """(n, T', h) -> (n, h) by `pooling` (default: item_pooling)."""
        return pool_states(hidden, mask, pooling or self.pooling)

    def encode_pooled(self, items: torch.Tensor) -> torch.Tensor:
        """(n, hidden) pooled backbone states (the CLS state under item_pooling=cls)."""
        return self.pool(*self.encode_states(items))

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        if self.side is not None:
            hidden = self.side.item_states(self, items)
        elif self.frozen is not None:
            hidden = self.frozen.pooled(items)
        else:
            hidden = self.encode_pooled(items)
        content = self.proj(hidden)  # (n, d) from the pooled state
        return content if self.id_fusion is None else self.id_fusion(content, items)

    @contextmanager
    def without_catalogue(self):
        """The content path alone, live: no cached rows and no ID table (both are indexed by catalogue item), for
        items outside the catalogue. The frozen parts run in eval mode as the caches were built, so a catalogue
        item encoded here gets its cached (ID-less) embedding."""
        names = ("frozen", "id_fusion")
        saved = {name: getattr(self, name) for name in names}
        side_table = self.side.table if self.side is not None else None
        for name in names:
            setattr(self, name, None)
        if self.side is not None:
            self.side.table = None
        try:
            yield self
        finally:
            for name, value in saved.items():
                setattr(self, name, value)
            if self.side is not None:
                self.side.table = side_table

    @torch.no_grad()
    def cache_backbone(self, store=None, limit_bytes: int = 4 << 30, side_limit_bytes: int | None = None) -> str:
        """Encode the frozen part once into `store` (data/store.py; default: in memory): the side network's
        inputs (adapter=side), every item's pooled output when no backbone parameter trains, else the hidden
        states below the lowest trainable layer (models/frozen_path.py). Returns what was cached."""
        self.frozen = None
        if self.side is not None:
            self.side.table = None
        store = store if store is not None else MemoryStore()
        device = self.proj.weight.device
        if self.side is not None:
            side_dtype = self.side.state_dtype
            need = estimate_bytes(self, self.side.layers, side_dtype, self.side.both_poolings)
            if side_limit_bytes is not None and need > side_limit_bytes:
                raise CacheError(
                    f"the side network's state cache would take {need / 2**30:.2f} GB ({self.num_items + 1} items x "
                    f"{self.side.states_per_item} states x {self.backbone.config.hidden_size} x {side_dtype}), above "
                    f"side_cache_max_gb={side_limit_bytes / 2**30:g}: use fewer side_layers, side_pooling=item, "
                    f"side_cache_dtype=bf16 or fp16, or raise side_cache_max_gb")
            self.side.table = on_device(layer_state_table(self, store, self.side.layers, side_dtype,
                                                          both_poolings=self.side.both_poolings), device)
            self.cache_report = dict(store.report)
            both = ", both poolings" if self.side.both_poolings else ""
            return f"the side network's inputs (layers {self.side.layers}{both}, {side_dtype})"
        self.frozen, what = frozen_path(self, store, limit_bytes)
        if self.frozen is not None:
            self.cache_report = dict(store.report)
        return what


class TextItemEncoder(ContentItemEncoder):
    """Items' token rows (a non-persistent buffer: rebuilt from the items file, never saved)."""

    def __init__(self, backbone: nn.Module, tokens: TokenTable, d: int, pooling: str = "cls", **head):
        super().__init__(backbone, d, pooling, **head)
        self.register_buffer("token_ids", tokens.ids, persistent=False)
        self.register_buffer("token_lengths", tokens.lengths, persistent=False)

    @property
    def num_items(self) -> int:
        return self.token_ids.shape[0] - 1

    def encode_states(self, items: torch.Tensor):
        input_ids, attention_mask = gather_tokens(self.token_ids, self.token_lengths, items)
        return self.backbone(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state, attention_mask

    def encode_all_states(self, items: torch.Tensor):
        input_ids, attention_mask = gather_tokens(self.token_ids, self.token_lengths, items)
        out = self.backbone(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        return out.hidden_states, out.last_hidden_state, attention_mask

    def input_digest(self) -> str:
        return tensor_digest(self.token_ids, self.token_lengths)  # tokenizer, fields, budget and items in one

    @torch.no_grad()
    def encode_texts(self, tokens: TokenTable, chunk: int = 256) -> torch.Tensor:
        """(m, d) fp32 embeddings of m items outside the catalogue given only their tokens (rows 1..m of `tokens`,
        tokenised as the catalogue was): the content path, no ID (a new item has none)."""
        saved = self.token_ids, self.token_lengths
        device = self.proj.weight.device
        was_training = self.training
        self.eval()
        try:
            self.token_ids, self.token_lengths = tokens.ids.to(device), tokens.lengths.to(device)
            with self.without_catalogue():
                return encode_catalogue(self, len(tokens.lengths) - 1, device, chunk)[1:]
        finally:
            self.token_ids, self.token_lengths = saved
            self.train(was_training)

    # --- for the frozen-prefix cache
    def sequence_width(self) -> int:
        return self.token_ids.shape[1]

    def embed(self, items: torch.Tensor):
        input_ids, attention_mask = gather_tokens(self.token_ids, self.token_lengths, items)
        return self.backbone.embeddings(input_ids=input_ids), attention_mask

    def attention_mask(self, items: torch.Tensor) -> torch.Tensor:
        return token_mask(self.token_lengths, items)  # per step: the token ids are not needed


class ImageItemEncoder(ContentItemEncoder):
    """Items' pixels from a memory-mapped uint8 table (kept on the host: a catalogue of 224px images does not
    belong in GPU memory); only the rows of the batch's distinct items are copied to the device."""

    def __init__(self, backbone: nn.Module, pixels: PixelTable, spec: ImageSpec, d: int, pooling: str = "cls",
                 **head):
        super().__init__(backbone, d, pooling, **head)
        self.pixels = pixels
        height, width = pixels.array.shape[2:]                                 # the table's size, not the config's
        patch, native = backbone.config.patch_size, backbone.config.image_size
        if height % patch or width % patch:
            raise ValueError(f"pixels of {height}x{width}: expected multiples of the patch size {patch}")
        self.grid = (height // patch, width // patch)
        self.interpolate = (height, width) != ((native, native) if isinstance(native, int) else tuple(native))
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, 3, 1, 1), persistent=False)

    @property
    def num_items(self) -> int:
        return len(self.pixels) - 1

    def pixel_inputs(self, items: torch.Tensor) -> dict:
        device = self.mean.device
        raw = self.pixels.gather(items).to(device, non_blocking=True)      # (n, 3, H, W) uint8
        inputs = {"pixel_values": (raw.float() / 255.0 - self.mean) / self.std}
        if self.interpolate:  # bicubic, from the checkpoint's grid to self.grid (HF's interpolate_pos_encoding)
            inputs["interpolate_pos_encoding"] = True
        if self.backbone.config.model_type == "vit_mae":
            # increasing noise keeps every patch in its own order: no random shuffle, deterministic
            inputs["noise"] = torch.arange(self.patches(), device=device, dtype=torch.float).expand(len(items), -1)
        return inputs

    def patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def encode_states(self, items: torch.Tensor):
        return self.backbone(**self.pixel_inputs(items)).last_hidden_state, self.patches()

    def encode_all_states(self, items: torch.Tensor):
        out = self.backbone(**self.pixel_inputs(items), output_hidden_states=True)
        return out.hidden_states, out.last_hidden_state, self.patches()

    def input_digest(self) -> str:
        # the pixel table's item-store key covers the store, the items, the input size and the missing policy
        return f"{self.pixels.digest}:{list(self.pixels.array.shape)}:{list(self.mean.flatten().tolist())}"

    # --- for the frozen-prefix cache (no padding in images: every token attends to every token)
    def sequence_width(self) -> int:
        return 1 + self.patches()

    def embed(self, items: torch.Tensor):
        out = self.backbone.embeddings(**self.pixel_inputs(items))
        return (out[0] if isinstance(out, tuple) else out), None  # MAE: (embeddings, mask, ids_restore)

    def attention_mask(self, items: torch.Tensor) -> None:
        return None


class IdItemEncoder(nn.Module):
    def __init__(self, num_items: int, d: int, init_std: float = 0.0):
        super().__init__()
        self.embedding = nn.Embedding(num_items + 1, d, padding_idx=0)
        init_weight(self.embedding.weight, init_std)
        with torch.no_grad():
            self.embedding.weight[0].zero_()

    @property
    def num_items(self) -> int:
        return self.embedding.num_embeddings - 1

    def forward(self, items: torch.Tensor) -> torch.Tensor:
        return self.embedding(items)
