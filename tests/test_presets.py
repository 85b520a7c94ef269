"""Presets: a launcher's recipe by name, so Python, run.py and the launcher start from the same settings."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from adapter4rec.config import REPO_ROOT, parse_args
from adapter4rec.config import presets
from adapter4rec.config.presets import PresetError, preset
from tests.conftest import tiny_args

FROZEN = REPO_ROOT / "Downstream" / "Text" / "script" / "frozen.py"


def _env() -> dict:
    env = dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1")
    for key in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT", "A4R_DEBUG"):
        env.pop(key, None)
    return env


def test_a_preset_is_the_launchers_recipe_with_its_folders_stage():
    settings = preset("frozen")
    assert settings["stage"] == "downstream" and settings["modality"] == "text"
    assert (settings["tune"], settings["adapter"], settings["train_head"]) == ("peft", "none", True)
    assert settings["lr"] == 1e-3 and settings["run_name"] == "frozen"  # the single SWEEP value; its run name
    assert settings["dataset"] == "Dataset/default/target" and settings["epochs"] == 5  # target.py's constants
    image = preset("sm_vit_cpc")
    assert (image["stage"], image["modality"], image["arch"]) == ("pretrain", "image", "cpc")
    assert "target" not in presets.preset_names() and not any(n.startswith("study_") for n in presets.preset_names())


def test_run_py_and_fit_read_the_same_preset():
    cfg = parse_args(["--preset", "adapter_lora", "--epochs=1"], stage="downstream", modality="text")
    recipe = preset("adapter_lora")
    assert cfg.epochs == 1 and cfg.adapter == "lora" and cfg.run_name == "adapter_lora"
    assert all(getattr(cfg, k) == v for k, v in recipe.items() if k != "epochs")


def test_an_unknown_preset_gets_a_suggestion():
    with pytest.raises(PresetError, match="did you mean 'frozen'"):
        preset("frozn")
    with pytest.raises(SystemExit, match="unknown preset 'finetun'"):
        parse_args(["--preset=finetun"])


def test_a_swept_setting_must_be_given(tmp_path, monkeypatch):
    folder = tmp_path / "Downstream" / "Text" / "script"
    folder.mkdir(parents=True)
    (folder / "target.py").write_text("BASE = dict(epochs=2)\n")
    (folder / "grid.py").write_text("from target import BASE\nARGS = dict(BASE, tune='all')\n"
                                    "SWEEP = dict(lr=[1e-3, 1e-4], dropout=[0.2])\n"
                                    "if __name__ == '__main__':\n    raise SystemExit('the sweep must not run')\n")
    monkeypatch.setattr(presets, "_repo_root", lambda: tmp_path)
    with pytest.raises(PresetError, match=r"sweeps lr over \[0.001, 0.0001\].*give lr="):
        preset("grid")
    settings = preset("grid", given=("lr",))
    assert settings["epochs"] == 2 and settings["dropout"] == 0.2 and "lr" not in settings
    assert "target" not in sys.modules  # the launcher folder's shared module is not left behind


def test_a_mistyped_launcher_option_is_refused_with_a_suggestion():
    proc = subprocess.run([sys.executable, str(FROZEN), "--dryrun"], capture_output=True, text=True, env=_env(),
                          timeout=60)
    assert proc.returncode == 2, proc.stderr
    assert "unknown option --dryrun (did you mean '--dry_run'?)" in proc.stderr
    proc = subprocess.run([sys.executable, str(FROZEN), "--dry_run", "--epochs=1"], capture_output=True, text=True,
                          env=_env(), timeout=60)
    assert proc.returncode == 0 and "--epochs=1" in proc.stdout, proc.stderr


def test_the_same_run_from_python_and_from_its_launcher_is_identical(tiny_bert, tiny_data, tmp_path):
    import adapter4rec

    # finetune from scratch on the tiny data: the preset's other settings (loss, lr, precision, seed...) as the
    # launcher gives them; the overrides are the same on both sides
    overrides = dict(dataset=str(tiny_data / "target"), item_encoder=str(tiny_bert), epochs=1, batch_size=16,
                     max_seq_len=8, embedding_dim=16, progress=False, max_title_tokens=16, source_checkpoint="")
    launcher_out, python_out = tmp_path / "launcher", tmp_path / "python"
    args = tiny_args(tiny_bert, tiny_data / "target", launcher_out, source_checkpoint="")
    proc = subprocess.run([sys.executable, str(REPO_ROOT / "Downstream" / "Text" / "script" / "finetune.py"), *args],
                          capture_output=True, text=True, env=_env(), timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as the launcher's run (OMP_NUM_THREADS=1): float sums in the same order
    try:
        results = adapter4rec.fit(preset="finetune", output_dir=str(python_out), cache_dir=str(python_out / "cache"),
                                  **overrides)
    finally:
        torch.set_num_threads(threads)
    from_launcher = json.loads((launcher_out / "finetune" / "results.json").read_text())
    assert Path(results["run_dir"]).name == "finetune"
    assert results["test"] == from_launcher["test"] and results["valid_ndcg@10"] == from_launcher["valid_ndcg@10"]
    assert results["test_no_mask"] == from_launcher["test_no_mask"]
    assert results["test"]["users"] > 0
