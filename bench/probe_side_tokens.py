"""Probe, not part of the package: would a TOKEN-level side network beat the pooled one on images?

The package's side network (adapters/side.py) reads one pooled vector per layer; Houlsby adapts every patch
token inside the ViT, and on the default image target it stays ahead (96.6% over five seeds). This probe swaps
in a ladder-side-tuning style network (LST, Sung et al. 2022) that reads every token's state at the same layers:

    u_j = D_j norm(h_j)                 (n, T, hidden) -> (n, T, r), per token
    z_j = mu_j z_{j-1} + (1 - mu_j) u_j gated chain as in the package's network
    z_j = z_j + Attn_j(LN_j(z_j))       2-head self-attention over the item's tokens, width r
    z_j = z_j + M_j act(z_j)
    h   = s_k + U act(z_k[:, 0])        read at the first token, U zero-initialised (the identity at init)

It runs the frozen backbone live in eval mode (no cache), so it needs --cache_frozen_backbone=false; everything
else is the launcher's command. Measured (the package at commit ac7bd32, 2 threads, five seeds each, the arguments of
`Downstream/CV/script/sm_vit_side.py --dry_run` plus --cache_frozen_backbone=false and --seed / --item_adapter_lr):
validation NDCG@10 0.1340 (item lr 1e-2) and 0.1346 (3e-3) against the pooled network's 0.1332 and Houlsby's
0.1353; test HR@10 0.2191 and 0.2146 against 0.2209 and 0.2286. Token mixing does not close the gap, so the
package keeps the pooled network (and its cache of one vector per layer). See docs/adapters.md.

    python bench/probe_side_tokens.py <sm_vit_side.py's run.py arguments> --cache_frozen_backbone=false \
        --output_dir=/tmp/probe --run_name=tokens
"""
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from adapter4rec.adapters import methods  # noqa: E402
from adapter4rec.adapters.bottleneck import AdapterModule  # noqa: E402
from adapter4rec.config import parse_args  # noqa: E402
from adapter4rec.training.train import run  # noqa: E402

HEADS = 2


class TokenSideNetwork(AdapterModule):
    """(n, k, T, hidden) token states at k layers + the pooled output (n, hidden) -> (n, hidden)."""

    def __init__(self, hidden: int, layers: list[int], r: int):
        super().__init__()
        self.layers, self.hidden, self.both_poolings, self.state_dtype = list(layers), hidden, False, "bf16"
        k = len(layers)
        self.downs = nn.ModuleList(nn.Linear(hidden, r) for _ in range(k))
        self.norms = nn.ModuleList(nn.LayerNorm(r) for _ in range(k))
        self.attns = nn.ModuleList(nn.MultiheadAttention(r, HEADS, batch_first=True) for _ in range(k))
        self.mixes = nn.ModuleList(nn.Linear(r, r) for _ in range(k))
        self.gates = nn.Parameter(torch.zeros(k - 1))
        self.up = nn.Linear(r, hidden)
        nn.init.zeros_(self.up.weight)
        nn.init.zeros_(self.up.bias)

    def forward(self, tokens: torch.Tensor, output: torch.Tensor) -> torch.Tensor:
        z = None
        for j, down in enumerate(self.downs):
            u = down(F.layer_norm(tokens[:, j], (self.hidden,)))
            z = u if z is None else torch.lerp(u, z, torch.sigmoid(self.gates[j - 1]))
            q = self.norms[j](z)
            z = z + self.attns[j](q, q, q, need_weights=False)[0]  # images: no padding tokens
            z = z + self.mixes[j](F.relu(z))
        return output + self.up(F.relu(z[:, 0]))

    def item_states(self, encoder, items: torch.Tensor) -> torch.Tensor:
        """In place of SideNetwork.item_states: every token at the side layers, live, rounded to bf16 as the
        package's cache would store them."""
        was_training = encoder.backbone.training
        encoder.backbone.eval()
        with torch.no_grad():
            hidden, output, patches = encoder.encode_all_states(items)
            top = len(hidden) - 1
            tokens = torch.stack([output if layer == top else hidden[layer] for layer in self.layers], 1)
            tokens = tokens.to(torch.bfloat16).float()
            pooled = encoder.pool(output, patches).to(torch.bfloat16).float()
        encoder.backbone.train(was_training)
        return self(tokens, pooled)


def add_token_side(add):
    def wrapped(model, site, layers, cfg, method):
        names = add(model, site, layers, cfg, method)
        if method == "side":
            pooled = model.item_encoder.side
            model.item_encoder.side = TokenSideNetwork(pooled.hidden, pooled.layers, site.size)
        return names
    return wrapped


if __name__ == "__main__":
    cfg = parse_args(sys.argv[1:], stage="downstream", modality="image", dataset="Dataset/default_cv/target",
                     max_seq_len=10)
    if cfg.adapter != "side" or cfg.cache_frozen_backbone:
        raise SystemExit("probe_side_tokens.py: give the side launcher's arguments and --cache_frozen_backbone=false")
    methods._add = add_token_side(methods._add)
    run(cfg)
