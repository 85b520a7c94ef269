"""Suggestions for a mistyped command-line flag: the closest keys by edit distance, and common other names.

config.parse_args refuses an unknown argument; this says which key was probably meant."""
from __future__ import annotations


# other names of our keys: common spellings elsewhere (PyTorch / Hugging Face / RecBole habits) and the original
# Adapter4Rec code's flags (docs/original.md); an unknown argument close to one of them suggests our key
ALIASES: dict[str, tuple[str, ...]] = {
    "learning_rate": ("lr",), "learningrate": ("lr",), "batch": ("batch_size",), "bs": ("batch_size",),
    "batchsize": ("batch_size",), "train_batch_size": ("batch_size",), "epoch": ("epochs",),
    "num_epochs": ("epochs",), "n_epochs": ("epochs",), "max_epochs": ("epochs",), "wd": ("weight_decay",),
    "l2_weight": ("weight_decay",), "seq_len": ("max_seq_len",), "maxlen": ("max_seq_len",),
    "max_len": ("max_seq_len",), "max_seq_length": ("max_seq_len",), "hidden": ("embedding_dim",),
    "hidden_size": ("embedding_dim",), "hidden_units": ("embedding_dim",), "d_model": ("embedding_dim",),
    "dim": ("embedding_dim",), "embed_dim": ("embedding_dim",), "emb_dim": ("embedding_dim",),
    "embedding_size": ("embedding_dim",), "layers": ("num_blocks",), "num_layers": ("num_blocks",),
    "n_layers": ("num_blocks",), "transformer_block": ("num_blocks",), "heads": ("num_heads",),
    "n_heads": ("num_heads",), "num_attention_heads": ("num_heads",), "drop_rate": ("dropout",),
    "dropout_prob": ("dropout",), "max_grad_norm": ("grad_clip",), "clip_grad_norm": ("grad_clip",),
    "warmup": ("warmup_steps",), "scheduler": ("lr_schedule",), "lr_scheduler": ("lr_schedule",),
    "fine_tune_lr": ("item_encoder_lr",), "backbone_lr": ("item_encoder_lr",), "bert_lr": ("item_encoder_lr",),
    "adapter_lr": ("item_adapter_lr", "user_adapter_lr"), "adapter_bert_lr": ("item_adapter_lr",),
    "adapter_cv_lr": ("item_adapter_lr",), "adapter_sasrec_lr": ("user_adapter_lr",),
    "adapter_size": ("item_adapter_size", "user_adapter_size"), "bert_adapter_down_size": ("item_adapter_size",),
    "cv_adapter_down_size": ("item_adapter_size",), "adapter_down_size": ("user_adapter_size",),
    "lora_r": ("item_adapter_size", "user_adapter_size"), "lora_rank": ("item_adapter_size", "user_adapter_size"),
    "adapter_type": ("adapter",),
    "adding_adapter_to": ("adapter_where",), "fine_tune_to": ("tune",), "finetune_layernorm": ("tune_layernorm",),
    "n_tokens": ("prompt_tokens",), "root_data_dir": ("dataset",), "data": ("dataset",), "behaviors": ("users_file",),
    "news": ("items_file",), "lmdb_data": ("images_lmdb",), "news_attributes": ("text_fields",),
    "num_words_title": ("max_title_tokens",), "max_tokens": ("max_title_tokens",),
    "bert_model_load": ("item_encoder",), "cv_model_load": ("item_encoder",), "model_name": ("item_encoder",),
    "pretrained_model_name": ("source_checkpoint",), "pretrained_recsys_model": ("source_checkpoint",),
    "checkpoint": ("source_checkpoint", "resume"), "load_ckpt_name": ("resume",), "out_dir": ("output_dir",),
    "output": ("output_dir",), "name": ("run_name",), "metric": ("select_metric",), "k": ("topk",),
}


def edit_distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment): insertions, deletions, substitutions and swaps of
    two adjacent characters each cost 1."""
    previous2, previous = None, list(range(len(b) + 1))
    for i in range(1, len(a) + 1):
        row = [i] + [0] * len(b)
        for j in range(1, len(b) + 1):
            row[j] = min(previous[j] + 1, row[j - 1] + 1, previous[j - 1] + (a[i - 1] != b[j - 1]))
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                row[j] = min(row[j], previous2[j - 2] + 1)
        previous2, previous = previous, row
    return previous[len(b)]


def _close_enough(distance: int, word: str) -> bool:
    """A typo, not another word: at most 1 edit up to 5 characters, 2 up to 10, 3 beyond, and under half the
    word (so `--x` is not read as `--lr`)."""
    return distance <= (1 if len(word) <= 5 else 2 if len(word) <= 10 else 3) and distance < len(word) / 2


def suggest(arg: str, kinds: dict[str, type]) -> str:
    """' (did you mean --key?)' for an unknown command-line argument, '' when no key is close. kinds: every key
    of the Config and the type of its default.

    Candidates: every key (typed with dashes or underscores, in any case), `--no_KEY` for a boolean key, and the
    ALIASES; the closest by edit distance win (up to 3), else the keys (up to 3) that start with what was typed
    (allow_abbrev is off: a prefix is never taken as the key)."""
    if not arg.startswith("-") or arg.lstrip("-") == "":
        return ""
    typed = arg.lstrip("-").split("=", 1)[0]
    key = typed.lower().replace("-", "_")
    dashed = "-" in typed and "_" not in typed

    def flag(name: str) -> str:
        return "--" + (name.replace("_", "-") if dashed else name)
    if key.startswith("no_") and kinds.get(key[3:]) is bool:
        return f" (did you mean {flag(key[3:])}=false?)"
    candidates = [(name, (name,)) for name in kinds] + list(ALIASES.items())
    scored = [(edit_distance(key, spelling), spelling, names) for spelling, names in candidates]
    scored = [(d, spelling, names) for d, spelling, names in scored if _close_enough(d, spelling)]
    if scored:
        best = min(d for d, _, _ in scored)
        hits = [(spelling, names) for d, spelling, names in scored if d == best]
    else:
        hits = [(name, (name,)) for name in kinds if len(key) >= 4 and name.startswith(key)]
    targets = list(dict.fromkeys(name for _, names in hits for name in names))
    if not targets or len(targets) > 3:
        return ""
    aliases = [spelling for spelling, _ in hits if spelling in ALIASES]
    note = f" {aliases[0]} is called {' / '.join(ALIASES[aliases[0]])} here" if aliases else ""
    return f" (did you mean {' or '.join(flag(t) for t in targets)}?{note})"


def suggest_name(word: str, names) -> str:
    """' (did you mean 'x'?)' for a mistyped name among `names` (presets, launcher options), '' when none is close."""
    scored = [(edit_distance(word.lower(), name.lower()), name) for name in names]
    close = sorted((d, name) for d, name in scored if _close_enough(d, name))
    return f" (did you mean {close[0][1]!r}?)" if close else ""
