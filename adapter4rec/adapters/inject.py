"""Where adapters go: ONE table of module-name patterns per encoder family, and one injection walker.

Patterns are full matches over `named_modules()` names relative to the encoder, with the layer index as
the first group. Slots:
  attention / ffn          the Dropout that ends the attention / feed-forward branch, right before the residual
                           add (serial adapters: Houlsby et al. put the adapter after the output projection
                           AND its dropout). Each is called exactly once, in BertSelfOutput/BertOutput,
                           ViTSelfOutput/ViTOutput (and the MAE ones) and our SASRec SublayerOutput.
  attention_out / ffn_out  the sub-layer output module out(hidden, input_tensor), BERT/SASRec:
                           LN(Drop(hidden) + input) (parallel adapters)
  query / value            attention projections (LoRA)
Names are those of transformers 4.x (pinned); transformers 5 renames ViT modules — the injection counts
below fail loudly if names drift.
"""
from __future__ import annotations

import re
from typing import Callable

from torch import nn

TARGETS: dict[str, dict[str, str]] = {
    "bert": {  # BertModel, RobertaModel, XLMRobertaModel (MiniLM is a BertModel)
        "attention": r"encoder\.layer\.(\d+)\.attention\.output\.dropout",
        "ffn": r"encoder\.layer\.(\d+)\.output\.dropout",
        "attention_out": r"encoder\.layer\.(\d+)\.attention\.output",
        "ffn_out": r"encoder\.layer\.(\d+)\.output",
        "query": r"encoder\.layer\.(\d+)\.attention\.self\.query",
        "value": r"encoder\.layer\.(\d+)\.attention\.self\.value",
    },
    "vit": {  # ViTModel, ViTMAEModel (pre-LN; the sub-layer residuals are added by ViTLayer / ViTOutput)
        "attention": r"encoder\.layer\.(\d+)\.attention\.output\.dropout",
        "ffn": r"encoder\.layer\.(\d+)\.output\.dropout",
        "attention_out": r"encoder\.layer\.(\d+)\.attention\.output",
        "ffn_out": r"encoder\.layer\.(\d+)\.output",
        "query": r"encoder\.layer\.(\d+)\.attention\.attention\.query",
        "value": r"encoder\.layer\.(\d+)\.attention\.attention\.value",
    },
    "sasrec": {  # adapter4rec.models.user_encoder.SASRecEncoder
        "attention": r"blocks\.(\d+)\.attention_output\.drop",
        "ffn": r"blocks\.(\d+)\.feed_forward_output\.drop",
        "attention_out": r"blocks\.(\d+)\.attention_output",
        "ffn_out": r"blocks\.(\d+)\.feed_forward_output",
        "query": r"blocks\.(\d+)\.attention\.query",
        "value": r"blocks\.(\d+)\.attention\.value",
    },
}
HF_FAMILIES = {"bert": "bert", "roberta": "bert", "xlm-roberta": "bert", "vit": "vit", "vit_mae": "vit"}
# Families whose *_out modules do NOT add their input back (ViTSelfOutput ignores `input_tensor`; ViTLayer
# adds the residual): a parallel adapter must add its delta to their output instead (see bottleneck.py).
PARALLEL_ADDS_TO_OUTPUT = {"vit"}
# ...and what a parallel adapter there must read instead of `input_tensor`, as a child of the replaced
# module's parent: ViTLayer feeds the FFN layernorm_after(h) but passes ViTOutput the raw stream h; ViTAttention
# passes ViTSelfOutput the attention's own input, layernorm_before(h), so that one needs nothing (He et al.
# 2022: the parallel adapter reads what its sub-layer reads).
PARALLEL_READS = {"vit": {"attention_out": None, "ffn_out": "layernorm_after"}}


def family_of(encoder: nn.Module) -> str:
    model_type = getattr(getattr(encoder, "config", None), "model_type", None)
    if model_type is None:
        return "sasrec"
    if model_type not in HF_FAMILIES:
        raise ValueError(f"adapters: no injection table for model_type={model_type!r} "
                         f"(known: {', '.join(sorted(HF_FAMILIES))})")
    return HF_FAMILIES[model_type]


def replace_modules(root: nn.Module, pattern: str, layers: set[int],
                    make: Callable[[nn.Module, nn.Module], nn.Module]) -> list[str]:
    """Replace every module whose name fully matches `pattern` and whose layer index is in `layers` by
    make(module, parent). Returns the replaced names (matches are collected first, so wrappers are not
    re-visited)."""
    regex = re.compile(pattern)
    hits = []
    for name, _ in root.named_modules():
        match = regex.fullmatch(name)
        if match and int(match.group(1)) in layers:
            hits.append(name)
    for name in hits:
        parent_name, _, child = name.rpartition(".")
        parent = root.get_submodule(parent_name) if parent_name else root
        setattr(parent, child, make(getattr(parent, child), parent))
    return hits


def inject(root: nn.Module, family: str, slots: list[str], layers: set[int],
           make: Callable[[str, nn.Module, nn.Module], nn.Module]) -> list[str]:
    """Inject make(slot, module, parent) into every (slot, layer) pair and check that exactly one module
    matched each pair."""
    changed = []
    for slot in slots:
        hits = replace_modules(root, TARGETS[family][slot], layers,
                               lambda module, parent: make(slot, module, parent))
        if len(hits) != len(layers):
            raise RuntimeError(f"adapters: slot {slot!r} of a {family} encoder matched {len(hits)} module(s) for "
                               f"{len(layers)} layer(s) (pattern {TARGETS[family][slot]!r}); module names may "
                               f"have changed with the transformers version")
        changed += hits
    return changed
