"""Every hyper-parameter of a run, in one dataclass, with strict command-line parsing.

`parse_args(argv, **defaults)` turns `--key value` / `--key=value` pairs into a `Config`. Unknown or
mistyped keys fail at parse time with a suggestion (nanoGPT/minGPT style), and out-of-range values fail
in `Config.validate()` with the key and the value. A checkpoint stores `dataclasses.asdict(config)`.
The package: this module (the keys, their help and the CLI), checks.py (what validate refuses), flags.py (the
suggestion for an unknown flag), presets.py (a launcher's recipe by name: `--preset NAME`).
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from adapter4rec.config.checks import check
from adapter4rec.config.flags import suggest
from adapter4rec.config.presets import REPO_ROOT  # the repository (Dataset/, runs/, launchers)

# The one definition of the settings that change how a run is carried out, not what it computes: a finished run
# asked again with other values of these is the same run (run/folder.py), a run may be resumed with them changed
# (run/resume.py adds a few of its own), and runs differing only in these and the seed are seeds of one report row
# (report.py). Evaluation chunk sizes change no count (evaluate.py: exact at every chunk size).
RUNTIME_KEYS = frozenset({"resume", "overwrite", "progress", "num_workers", "save_every_steps", "keep_last",
                          "keep_run_state",
                          "device", "tensorboard", "cache_dir", "nonfinite", "output_dir", "run_name",
                          "pretrained_models_dir", "eval_batch_size", "eval_item_chunk"})


def _opt(default, help_text: str, choices: tuple | None = None):
    return field(default=default, metadata={"help": help_text, "choices": choices})


@dataclass
class Config:
    # --- what is run
    stage: str = _opt("pretrain", "pretrain: source-domain training; downstream: target-domain transfer",
                      ("pretrain", "downstream"))
    modality: str = _opt("text", "item content: text (titles, BERT-like encoders) or image (LMDB store, ViT/MAE "
                         "encoders)", ("text", "image"))
    # --- data (paper format: users file 'user<TAB>item item ...', items file 'item<TAB>title[<TAB>abstract]')
    dataset: str = _opt("Dataset/default/source", "dataset folder (absolute, or relative to the repository root); a "
                        "comma list of folders is a source pool: each folder one domain with its own items and users "
                        "(data/pool.py)")
    pool_exclude_items: str = _opt("", "a pool: an items file (the target's) whose item ids are dropped from every "
                                   "domain, so the pool is item-disjoint from that target (counted)")
    domain_sampling: str = _opt("proportional", "a pool: how batches mix domains: proportional (every training "
                                "window once per epoch) or smoothed (domain d drawn with probability proportional "
                                "to n_d ** domain_temperature, windows with replacement, so small domains are not "
                                "drowned)", ("proportional", "smoothed"))
    domain_temperature: float = _opt(0.5, "domain_sampling=smoothed: the exponent on each domain's window count "
                                     "(1 = proportional, 0 = every domain alike)")
    mixed_negatives: bool = _opt(False, "a pool: a user's training loss also compares its target with other "
                                 "domains' items (UniSRec's mixed-domain in-batch negatives); false: its own "
                                 "domain's items only, as evaluation ranks")
    users_file: str = _opt("users.tsv", "users file inside the dataset folder")
    items_file: str = _opt("items.tsv", "items file inside the dataset folder")
    min_seq_len: int = _opt(5, "users with fewer items are dropped (counted in the log)")
    max_seq_len: int = _opt(20, "history length L fed to the user encoder (paper: 20 text, 10 image)")
    user_fraction: float = _opt(1.0, "train on this share (0, 1] of the users, chosen by a seeded permutation so "
                                "that a larger fraction contains every smaller one (data-scaling studies); "
                                "validation and test keep every user, so all fractions are measured alike")
    user_fraction_seed: int = _opt(0, "seed of that permutation (independent of the run's seed)")
    unknown_items: str = _opt("error", "a users line naming an item missing from the items file: "
                              "error (stop, naming file and line) or drop (remove it, counted)", ("error", "drop"))
    text_fields: str = _opt("title", "comma list of item text fields to encode: title, abstract")
    max_title_tokens: int = _opt(30, "token budget per item text (batches pad only to their longest title)")
    images_lmdb: str = _opt("images.lmdb", "image LMDB (Dataset/build_lmdb.py, or the original builder's) inside "
                            "the dataset folder, or a path")
    missing_images: str = _opt("error", "an item whose image is missing or undecodable: error (stop, listing "
                               "them) or blank (mean-colour image, counted)", ("error", "blank"))
    image_size: int = _opt(0, "input size in px of an image item encoder: 0 = the checkpoint's own "
                           "(preprocessor_config.json); another multiple of its patch size runs it at that size, its "
                           "position table interpolated (bicubic), e.g. 112 for a 224 px ViT on CPU (4x fewer tokens)")
    cache_dir: str = _opt("Dataset/cache", "where item tokens, decoded pixels and frozen backbone states are cached "
                          "(keyed: rebuilt when what they depend on changes)")
    # --- item tower
    item_tower: str = _opt("modal", "modal: encode item content; id: learned item-ID embedding baseline; fused: "
                           "content + a target item-ID embedding (items never trained: content alone)",
                           ("modal", "id", "fused"))
    item_fusion: str = _opt("sum", "item_tower=fused: how content c and ID e combine: sum (c + e), concat "
                            "(Linear([c; e]), c + e at init), gate (g c + (1 - g) e per dimension)",
                            ("sum", "concat", "gate"))
    id_dropout: float = _opt(0.0, "item_tower=fused: share of a step's items embedded without their ID in "
                             "training (item drop), so the content path alone stays usable for cold items")
    item_head: str = _opt("linear", "the item tower's head over the pooled backbone state: linear (Linear + GELU, "
                          "paper) or moe (UniSRec's whitening mixture: softmax-gated experts (x - b_i) W_i)",
                          ("linear", "moe"))
    head_experts: int = _opt(8, "item_head=moe: number of whitening experts k")
    item_encoder: str = _opt("all-MiniLM-L6-v2", "Hugging Face checkpoint folder under pretrained_models_dir "
                             "(or a path): bert_base_uncased, roberta_base, all-MiniLM-L6-v2, ...; images: "
                             "dinov2-vits14-224, vit-base-patch16-224, mae, vit-tiny-demo, ...")
    pretrained_models_dir: str = _opt("pretrained_models", "where item-encoder checkpoints live")
    # --- user encoder (SASRec, post-LN, learned positions, left padding)
    embedding_dim: int = _opt(64, "d: item and user embedding size")
    num_blocks: int = _opt(2, "Transformer blocks in the user encoder")
    num_heads: int = _opt(2, "attention heads in the user encoder")
    dropout: float = _opt(0.1, "dropout in the user encoder")
    init_std: float = _opt(0.0, "initial weights of the user encoder's (and an ID tower's) Linear and Embedding "
                           "layers: 0 = xavier_normal (the paper), > 0 = normal(0, init_std) (RecBole: 0.02)")
    arch: str = _opt("sasrec", "sasrec: loss at every position; cpc: loss at the last position only",
                     ("sasrec", "cpc"))
    loss: str = _opt("bce", "bce: one sampled negative per position (paper); inbatch: softmax over the batch's "
                     "distinct items with a sampling correction (IDvs.MoRec); softmax: cross-entropy over the whole "
                     "catalogue (RecBole's CE), or with softmax_negatives > 0 over the batch's items plus that many "
                     "shared uniform negatives (models/losses.py)", ("bce", "inbatch", "softmax"))
    inbatch_correction: str = _opt("multiplicity", "logQ correction of the sampled softmax losses: multiplicity "
                                   "(sampled softmax over the batch's slots, duplicates merged), inclusion (log "
                                   "probability of being among the distinct candidates), popularity (-log p, "
                                   "IDvs.MoRec's; over-corrects popular items), none",
                                   ("multiplicity", "inclusion", "popularity", "none"))
    softmax_negatives: int = _opt(0, "loss=softmax: 0 = every item is a candidate (exact; cheap for ID items and "
                                  "cached frozen backbones); S > 0 = the batch's items + S shared uniform negatives")
    gather_negatives: bool = _opt(True, "under DDP, the inbatch / sampled softmax candidates are the GLOBAL batch's "
                                  "items (gathered from every rank, gradients flowing back), as one process with "
                                  "the whole batch would see; false: each rank's own batch only")
    score: str = _opt("dot", "user-item score: dot (paper) or cosine / temperature (UniSRec, Recformer)",
                      ("dot", "cosine"))
    temperature: float = _opt(0.07, "score=cosine: the temperature tau (logits = cos / tau)")
    learn_temperature: bool = _opt(False, "score=cosine: learn tau (starting from `temperature`, 1/tau capped at "
                                   "100); it trains with `lr` (also under tune=peft)")
    item_pooling: str = _opt("cls", "item vector from the backbone's last layer: cls (paper) or mean over real "
                             "tokens / patches", ("cls", "mean"))
    train_windows: str = _opt("last", "training windows per user: last (the newest L+1 items, paper) or all "
                              "(windows L items apart, so every training interaction is a target once per epoch)",
                              ("last", "all"))
    cold_items: float = _opt(0.0, "cold-start study: this share of the items (seeded, the same for every run) is "
                             "removed from every training window, so they are never trained; the cold-start slice "
                             "of results.json (test targets never in training) then holds their test users")
    # --- optimisation
    epochs: int = _opt(10, "training epochs")
    batch_size: int = _opt(32, "users per step per process")
    lr: float = _opt(1e-4, "learning rate of the user encoder, projection head and ID embeddings")
    item_encoder_lr: float = _opt(5e-5, "learning rate of the pretrained item-encoder backbone (paper: fine_tune_lr)")
    weight_decay: float = _opt(0.0, "AdamW weight decay on matrices (paper: 0)")
    grad_clip: float = _opt(0.0, "clip the global gradient norm to this value (0 = off)")
    precision: str = _opt("fp32", "fp32, or autocast bf16 (CPU and GPU) / fp16 (GPU, with a grad scaler); auto: bf16 "
                          "where the device computes it in hardware, else fp32", ("fp32", "bf16", "fp16", "auto"))
    max_steps_per_epoch: int = _opt(0, "cap on steps per epoch (0 = the whole training set)")
    patience: int = _opt(0, "stop after this many evaluations without improvement (0 = never)")
    lr_schedule: str = _opt("constant", "learning-rate schedule over the run's steps after warmup: constant, "
                            "linear (to 0) or cosine (to 0)", ("constant", "linear", "cosine"))
    warmup_steps: int = _opt(0, "linear learning-rate warmup from 0 over this many steps")
    # --- transfer
    source_checkpoint: str = _opt("", "downstream: the source run's checkpoint (e.g. runs/<name>/best.pt); "
                                  "empty = train on the target from scratch")
    zero_shot: bool = _opt(False, "downstream: no target training; the source model (item_tower=modal, "
                           "adapter=none) is evaluated on the target as it is")
    warm_start: str = _opt("", "downstream: a finished target run's checkpoint (runs/<name>/best.pt; same data, "
                           "model, source_checkpoint, item features, score and, if it trained adapters, the same "
                           "adapters: checkpoint.WARM_MATCH) loaded over the source weights: LP-FT (the head and "
                           "user encoder trained over the frozen backbone first, then full fine-tuning or an adapter "
                           "starts from them), or item_tower=fused over a trained item_tower=modal run (its IDs "
                           "then learn what the content misses); empty = no warm start")
    tune: str = _opt("all", "what trains. all: every parameter (pretraining, full fine-tuning); peft: every "
                     "pretrained parameter frozen, only the adapter modules and the extras below train",
                     ("all", "peft"))
    train_head: bool = _opt(False, "peft: also train the item projection head (adapter=none + train_head = "
                            "the 'frozen' baseline)")
    train_user_encoder: bool = _opt(False, "peft: also train the whole user encoder (with adapter=none + train_head: "
                                    "a frozen item backbone under a trained head and SASRec, the frozen-features "
                                    "baseline; cheap, every item's backbone state is cached)")
    tune_layernorm: bool = _opt(False, "peft: also train every LayerNorm (both encoders)")
    tune_bias: bool = _opt(False, "peft: also train every bias (BitFit when adapter=none)")
    # --- adapters (PEFT); see adapter4rec/adapters/
    adapter: str = _opt("none", "PEFT method inserted after the source checkpoint is loaded",
                        ("none", "houlsby", "parallel", "pfeiffer", "compacter", "lora", "kadapter", "prompt", "side"))
    adapter_where: str = _opt("both", "encoders that get adapters: item, user or both", ("item", "user", "both"))
    adapter_sublayers: str = _opt("auto", "bottleneck adapters after the attention sub-layer, the feed-forward "
                                  "sub-layer or both; auto = both, except pfeiffer = ffn (the paper's Pfeiffer "
                                  "variant is attention)", ("auto", "attention", "ffn", "both"))
    adapter_layers: int = _opt(0, "adapt only the top k layers of each encoder (0 = all layers); K-Adapter: "
                               "the layers that feed it (0 = first and last)")
    item_adapter_size: int = _opt(64, "item encoder: bottleneck size / LoRA rank / K-Adapter width (paper: 64, "
                                  "LoRA 12, K-Adapter 192)")
    user_adapter_size: int = _opt(16, "user encoder: bottleneck size / LoRA rank / K-Adapter width (paper: 16, "
                                  "LoRA 4)")
    adapter_activation: str = _opt("relu", "bottleneck activation", ("relu", "gelu", "tanh"))
    adapter_dropout: float = _opt(0.1, "dropout inside K-Adapter modules (bottleneck adapters apply none, as "
                                   "Houlsby et al. and the original)")
    item_adapter_lr: float = _opt(1.5e-4, "learning rate of item-encoder adapters (paper: adapter_bert_lr)")
    user_adapter_lr: float = _opt(1.5e-4, "learning rate of user-encoder adapters (paper: adapter_sasrec_lr)")
    lora_alpha: float = _opt(1.0, "LoRA scaling numerator: update = (alpha / r) B A (loralib default, as the paper)")
    kadapter_item_heads: int = _opt(12, "attention heads in the item-encoder K-Adapter")
    kadapter_user_heads: int = _opt(2, "attention heads in the user-encoder K-Adapter")
    compacter_n: int = _opt(4, "Compacter: number of Kronecker summands n (paper: hypercomplex_division)")
    phm_init_range: float = _opt(1e-4, "Compacter: std of the shared rule matrices at init")
    prompt_tokens: int = _opt(30, "prompt tuning: learned tokens inserted after [CLS]")
    user_adapter: str = _opt("auto", "the PEFT method in the user encoder when adapter_where is user or both: auto = "
                             "the same as `adapter`, except adapter=side (a side network is an item-encoder method), "
                             "whose user encoder gets houlsby", ("auto", "houlsby", "parallel", "pfeiffer",
                                                                 "compacter", "lora", "kadapter"))
    side_layers: str = _opt("", "adapter=side: comma list of the backbone layers (1..L) whose pooled states feed the "
                            "side network; the last layer is always added; empty = every other layer (2, 4, .., L)")
    side_pooling: str = _opt("item", "adapter=side: how each intermediate side layer's tokens are pooled: item = as "
                             "the item tower pools (item_pooling; IISAN's first token), both = that and the other "
                             "pooling (CLS and the mean of the item's own tokens), two states per layer", ("item", "both"))
    side_cache_dtype: str = _opt("bf16", "adapter=side: dtype of the cached layer states", ("bf16", "fp16", "fp32"))
    side_cache_max_gb: float = _opt(8.0, "adapter=side: refuse to build a layer-state cache larger than this (the "
                                    "estimate is checked before anything is computed)")
    cache_frozen_backbone: bool = _opt(True, "when no item-encoder backbone parameter trains, encode every item "
                                       "once (eval mode) and reuse the cached states")
    # --- evaluation (full ranking over all items, leave-one-out)
    eval_batch_size: int = _opt(256, "users per evaluation chunk")
    eval_item_chunk: int = _opt(65536, "items per evaluation chunk (memory: eval_batch_size x eval_item_chunk floats)")
    topk: str = _opt("5,10,20", "comma list of K for HR@K, NDCG@K and MRR@K")
    select_metric: str = _opt("ndcg@10", "validation metric that picks the best checkpoint")
    eval_candidates: str = _opt("interacted", "items ranked at evaluation: interacted (items occurring in some "
                                "kept user's sequence, as the original and RecBole rank) or all (every item of "
                                "the items file)", ("interacted", "all"))
    eval_repeats: str = _opt("skip", "a target item that is already in the user's history: skip (with history "
                             "masking such a user is an automatic miss; the user is left out and counted) or "
                             "no_mask (history is not masked for anyone)", ("skip", "no_mask"))
    # --- run
    output_dir: str = _opt("runs", "root of run directories (absolute, or relative to the repository root)")
    run_name: str = _opt("", "run directory name (default: derived from stage, arch, encoder and seed)")
    seed: int = _opt(12345, "random seed: each module's initial values and each rank's training stream derive from it")
    deterministic: bool = _opt(True, "bitwise-reproducible runs: deterministic kernels (torch."
                               "use_deterministic_algorithms, warn-only); without it the gradient scatter of "
                               "item embeddings adds in thread order and CPU runs drift apart in the 7th digit")
    resume: str = _opt("auto", "auto: continue an unfinished run from runs/<name>/last.pt (mid-epoch included); "
                       "none: start afresh; or the path of a last.pt")
    overwrite: bool = _opt(False, "start afresh in a run folder that already holds a run's results or checkpoints "
                           "(results.json, best.pt, last.pt), deleting them first; without it such a folder is "
                           "resumed (an unfinished run), reported as done (a finished run of the same settings) or "
                           "refused, never replaced")
    save_every_steps: int = _opt(200, "also write last.pt every this many batches (0 = at epoch ends only)")
    keep_last: int = _opt(1, "keep epoch-N.pt (same format as best.pt) of the newest this many epochs; older "
                          "ones are deleted once the new one is written (0 = no per-epoch files)")
    keep_run_state: bool = _opt(False, "keep last.pt and the epoch-N.pt files once the run has finished; by default "
                                "they are deleted when results.json is written (a finished run is used through "
                                "best.pt and results.json: recommend, export, warm start, report)")
    nonfinite: str = _opt("stop", "a NaN/inf loss (or gradient norm, when grad_clip > 0): stop (raise, naming "
                          "epoch and step; checkpoints on disk stay as they were) or skip (no update for that "
                          "batch, warned and counted in metrics.jsonl and results.json)", ("stop", "skip"))
    num_workers: int = _opt(0, "DataLoader worker processes")
    device: str = _opt("auto", "auto (cuda if available), cpu or cuda")
    progress: bool = _opt(True, "tqdm progress bars on rank 0")
    tensorboard: bool = _opt(False, "also write TensorBoard scalars to runs/<name>/tb (needs the tensorboard "
                             "package, not installed by default)")

    # ----------------------------------------------------------------------------------------------
    def topk_list(self) -> list[int]:
        return [int(k) for k in self.topk.split(",") if k.strip()]

    def text_field_list(self) -> list[str]:
        return [f.strip() for f in self.text_fields.split(",") if f.strip()]

    def resolve(self, path: str) -> Path:
        """A path from the config: absolute as given, otherwise relative to the repository root."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else REPO_ROOT / p

    def validate(self) -> "Config":
        """Raise ValueError naming the key, the value and what is expected; returns self when every check passes."""
        check(self)
        return self


def _parse_bool(text: str) -> bool:
    low = str(text).strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off", "none"):
        return False
    raise argparse.ArgumentTypeError(f"expected true/false, got {text!r}")


class _StrictParser(argparse.ArgumentParser):
    def error(self, message):  # argparse exits with status 2; we want one readable exception
        raise SystemExit(f"{self.prog}: {message}")


def build_parser(defaults: Config) -> argparse.ArgumentParser:
    parser = _StrictParser(prog="adapter4rec", allow_abbrev=False,
                           description="Adapter4Rec run (every key of adapter4rec.config.Config)")
    for f in dataclasses.fields(Config):
        kind = {bool: _parse_bool, int: int, float: float}.get(type(getattr(defaults, f.name)), str)
        flags = [f"--{f.name}"] + ([f"--{f.name.replace('_', '-')}"] if "_" in f.name else [])
        parser.add_argument(*flags, dest=f.name, type=kind, default=getattr(defaults, f.name),
                            help=f"{f.metadata['help']} (default: {getattr(defaults, f.name)!r})")
    # the legacy `python -m torch.distributed.launch` passes --local-rank/--local_rank; LOCAL_RANK is read from env
    parser.add_argument("--local-rank", "--local_rank", dest="_local_rank", type=int, default=None,
                        help=argparse.SUPPRESS)
    return parser


def parse_args(argv: list[str], **defaults) -> Config:
    """Parse `argv` over `Config(**defaults)` (over a launcher's recipe first with `--preset NAME`, see presets.py);
    unknown keys raise SystemExit with a suggestion."""
    from adapter4rec.config.presets import PresetError, preset, split_preset

    name, argv = split_preset(list(argv))
    if name is not None:
        given = tuple(a.lstrip("-").split("=", 1)[0] for a in argv if a.startswith("--"))
        try:
            defaults = {**defaults, **preset(name, given)}  # the named recipe over run.py's own
        except PresetError as err:
            raise SystemExit(f"adapter4rec: {err}") from None
    base = Config(**defaults)
    parser = build_parser(base)
    known, unknown = parser.parse_known_args(argv)
    if unknown:
        kinds = {f.name: type(f.default) for f in dataclasses.fields(Config)}
        raise SystemExit("adapter4rec: unknown argument(s): "
                         + ", ".join(f"{arg!r}{suggest(arg, kinds)}" for arg in unknown))
    values = {k: v for k, v in vars(known).items() if not k.startswith("_")}
    try:
        return Config(**values).validate()
    except ValueError as err:
        raise SystemExit(f"adapter4rec: {err}") from None


def from_dict(values: dict) -> Config:
    """Rebuild a Config stored in a checkpoint, ignoring keys this version no longer has."""
    names = {f.name for f in dataclasses.fields(Config)}
    return Config(**{k: v for k, v in values.items() if k in names})
