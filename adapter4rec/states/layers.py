"""What the frozen backbone computes for every item, computed once into a store (data/store.py).

One builder, three readers:
- pooled states at chosen layers, (n+1, k, hidden): the side network's input (adapters/side.py); with
  side_pooling=both also the other pooling of the intermediate ones, (n+1, 2k - 1, hidden). Layer l in
  1..L is the output of encoder layer l; the last one, L, is the backbone's output exactly as the item tower
  reads it (for ViT / MAE after the final LayerNorm), so a side network that adds nothing reproduces the
  source model. Intermediate layers are the raw hidden states.
- the pooled output alone, (n+1, 1, hidden) in fp32: the whole frozen backbone (the frozen baseline).
- token states entering layer `depth`, (n+1, T, hidden) in fp32: the frozen-prefix cache (models/frozen_path.py).
Each record is keyed by everything its values depend on: a fingerprint of the backbone's weights (after the
source checkpoint is loaded), of the item inputs (token table, or the decoded-pixel cache), the layers, the
pooling, the stored dtype and the compute precision. States are computed in eval mode, without gradients.
"""
from __future__ import annotations

import hashlib

import torch
from torch import nn

from adapter4rec.data.store import record_bytes

STATES_VERSION = 1


def tensor_digest(*tensors: torch.Tensor) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for tensor in tensors:
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(flat.view(torch.uint8).numpy().tobytes() if flat.numel() else b"")
    return digest.hexdigest()


def weights_digest(modules: list[nn.Module]) -> str:
    """Of every weight and buffer (names included): modules with one digest compute the same function."""
    digest = hashlib.blake2b(digest_size=16)
    for module in modules:
        digest.update(type(module).__name__.encode())
        for name, tensor in sorted(module.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor_digest(tensor).encode())
    return digest.hexdigest()


def parse_side_layers(text: str, num_layers: int) -> list[int]:
    """side_layers -> sorted layer numbers in 1..L, always ending with L. '' = every other layer (IISAN's
    default: the outputs of layers 2, 4, ..., L for even L)."""
    if not text.strip():
        layers = set(range(num_layers, 0, -2))
    else:
        try:
            layers = {int(part) for part in text.split(",") if part.strip()}
        except ValueError:
            raise SystemExit(f"adapter4rec: config: side_layers={text!r} is invalid; expected a comma list of layer numbers "
                             f"1..{num_layers}") from None
        bad = sorted(layer for layer in layers if not 1 <= layer <= num_layers)
        if bad:
            raise SystemExit(f"adapter4rec: config: side_layers={text!r} names layer(s) {bad}; this backbone has layers "
                             f"1..{num_layers}")
    return sorted(layers | {num_layers})  # the output: a side network that adds nothing = the source model


def compute_dtype(device: torch.device) -> str:
    on = torch.is_autocast_enabled(device.type)
    return str(torch.get_autocast_dtype(device.type)) if on else "fp32"


def record_key(encoder, kind: str, dtype: str, weights: list[nn.Module] | None = None, **extra) -> dict:
    """Everything a record's values depend on; `weights` = the modules that compute it (default: the backbone)."""
    backbone = encoder.backbone
    return dict(kind=f"states-{kind}", version=STATES_VERSION, weights=weights_digest(weights or [backbone]),
                model_type=backbone.config.model_type, inputs=encoder.input_digest(), pooling=encoder.pooling,
                dtype=dtype, compute=compute_dtype(encoder.proj.weight.device), **extra)


def _in_chunks(encoder, compute, chunk: int):
    """fill(write) for a store: compute(items) -> rows for items 1..n in chunks, in eval mode, no grad."""
    def fill(write):
        backbone, device = encoder.backbone, encoder.proj.weight.device
        was_training = backbone.training
        backbone.eval()
        try:
            with torch.no_grad():
                for start in range(1, encoder.num_items + 1, chunk):
                    items = torch.arange(start, min(start + chunk, encoder.num_items + 1), device=device)
                    write(start, compute(items))
        finally:
            backbone.train(was_training)
    return fill


def states_per_item(layers: list[int], both_poolings: bool) -> int:
    """k pooled states, plus the other pooling of the k - 1 intermediate layers under both_poolings."""
    return 2 * len(layers) - 1 if both_poolings else len(layers)


def layer_table_shape(encoder, layers: list[int], both_poolings: bool = False) -> tuple[int, int, int]:
    """(n+1, states per item, hidden): the pooled-state table's shape, for building it and for its size estimate."""
    return encoder.num_items + 1, states_per_item(layers, both_poolings), encoder.backbone.config.hidden_size


def pooled_layer_states(encoder, items: torch.Tensor, layers: list[int], both_poolings: bool = False) -> torch.Tensor:
    """(n, k [+ k - 1], hidden): the pooled states of `items` at `layers` (see the module docstring), from a live
    forward; under both_poolings followed by the other pooling (mean <-> cls) of every layer but the last."""
    hidden, output, mask = encoder.encode_all_states(items)
    top = len(hidden) - 1
    states = [encoder.pool(output if layer == top else hidden[layer], mask) for layer in layers]
    if both_poolings:
        other = "mean" if encoder.pooling == "cls" else "cls"
        states += [encoder.pool(hidden[layer], mask, other) for layer in layers[:-1]]
    return torch.stack(states, 1)


def layer_state_table(encoder, store, layers: list[int], dtype: str, chunk: int = 256,
                      both_poolings: bool = False) -> torch.Tensor:
    """(n+1, k [+ k - 1], hidden) pooled states at `layers` for every item, from `store` or built into it."""
    shape = layer_table_shape(encoder, layers, both_poolings)
    extra = dict(both_poolings=True) if both_poolings else {}  # the default's key (and its caches) unchanged
    key = record_key(encoder, "layers", dtype, layers=list(layers), **extra)
    return store.get_or_build(key, shape, dtype, _in_chunks(
        encoder, lambda items: pooled_layer_states(encoder, items, layers, both_poolings), chunk))


def prefix_state_table(encoder, store, depth: int, run_prefix, weights: list[nn.Module],
                       chunk: int = 256) -> torch.Tensor:
    """(n+1, T, hidden) fp32 token states entering layer `depth`; run_prefix(items) -> (n, T_items, hidden);
    `weights`: the frozen modules it runs (the trainable layers above are not part of the key)."""
    shape = (encoder.num_items + 1, encoder.sequence_width(), encoder.backbone.config.hidden_size)

    def compute(items):
        out = run_prefix(items)
        return torch.nn.functional.pad(out, (0, 0, 0, shape[1] - out.shape[1]))  # rows are T wide; pad zeros
    return store.get_or_build(record_key(encoder, "prefix", "fp32", weights, depth=depth), shape, "fp32",
                              _in_chunks(encoder, compute, chunk))


def estimate_bytes(encoder, layers: list[int], dtype: str, both_poolings: bool = False) -> int:
    return record_bytes(layer_table_shape(encoder, layers, both_poolings), dtype)
