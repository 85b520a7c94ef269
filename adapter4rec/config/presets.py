"""Presets: every launcher's recipe by name, for Python and run.py.

A launcher (`Downstream/Text/script/frozen.py`, `Pretraining/CV/script/sm_vit_sasrec.py`, ...) is the one place a
recipe is written: its ARGS over the shared target.py / source.py constants, and its SWEEP lists. `preset(name)`
reads that file, so `fit(preset="frozen", ...)` and `run.py --preset frozen ...` start from exactly the settings the
launcher gives its run (and its run name), and an edit of target.py reaches all three. Without a preset, Python and
run.py start from Config's defaults (the paper's settings), which are not the launchers' CPU-sized ones.

A preset is one run: a SWEEP key that takes several values must be given (`fit(preset=..., lr=1e-3)`), else the
preset is refused with the values to choose from. Launcher files are read, never changed; their `__main__` part
(the sweep itself) does not run.
"""
from __future__ import annotations

import runpy
import sys
from pathlib import Path

# the repository: its launchers, and Dataset/, pretrained_models/, runs/ that relative settings resolve against
# (defined here, not in config/__init__, which imports this module: one definition, no import cycle)
REPO_ROOT = Path(__file__).resolve().parents[2]
# launcher folder -> what its run.py sets before the launcher's arguments
LAUNCHER_DIRS = {"Downstream/Text/script": dict(stage="downstream", modality="text"),
                 "Pretraining/Text/script": dict(stage="pretrain", modality="text"),
                 "Downstream/CV/script": dict(stage="downstream", modality="image"),
                 "Pretraining/CV/script": dict(stage="pretrain", modality="image")}
SHARED_MODULES = ("target", "source")  # the constants each launcher folder shares; not recipes themselves
NOT_RECIPES = ("study_", "benchmark_", "pool_source")  # scripts that run many recipes or measure, not one run


class PresetError(ValueError):
    """An unknown preset, or one whose sweep leaves a setting open."""


def _repo_root() -> Path:
    return REPO_ROOT


def launcher_files() -> dict[str, Path]:
    """preset name (the launcher's file stem) -> launcher file, over every launcher folder."""
    found: dict[str, Path] = {}
    for folder in LAUNCHER_DIRS:
        for path in sorted((_repo_root() / folder).glob("*.py")):
            if path.stem in SHARED_MODULES or path.stem.startswith(NOT_RECIPES):
                continue
            if path.stem in found:  # two folders with one stem would make a name ambiguous
                raise PresetError(f"preset {path.stem!r} is defined twice: {found[path.stem]} and {path}")
            found[path.stem] = path
    return found


def preset_names() -> list[str]:
    return sorted(launcher_files())


def _read_launcher(path: Path) -> dict:
    """The launcher's module namespace (ARGS, SWEEP, ...), read with its own folder first on sys.path; the shared
    `target` / `source` modules are dropped from sys.modules before and after, since the Text and CV folders each
    have their own."""
    saved = {name: sys.modules.pop(name) for name in SHARED_MODULES if name in sys.modules}
    sys.path.insert(0, str(path.parent))
    try:
        return runpy.run_path(str(path), run_name="adapter4rec.config.presets:launcher")
    finally:
        sys.path.remove(str(path.parent))
        for name in SHARED_MODULES:
            sys.modules.pop(name, None)
        sys.modules.update(saved)


def preset(name: str, given: tuple[str, ...] = ()) -> dict:
    """The settings of launcher `name`'s run: its run.py's stage and modality, ARGS, the single value of each SWEEP
    list, and run_name (the launcher's). `given`: the keys the caller sets itself, which may leave a several-valued SWEEP key open."""
    from adapter4rec.config.flags import suggest_name

    files = launcher_files()
    if name not in files:
        raise PresetError(f"unknown preset {name!r}{suggest_name(name, files)}; presets (the launchers' names): "
                          f"{', '.join(sorted(files))}")
    namespace = _read_launcher(files[name])
    folder = files[name].parent.relative_to(_repo_root()).as_posix()
    settings = {**LAUNCHER_DIRS[folder], **namespace.get("ARGS", {})}
    for key, values in dict(namespace.get("SWEEP", {})).items():
        if len(values) == 1:
            settings[key] = values[0]
        elif key not in given:
            raise PresetError(f"preset {name!r} sweeps {key} over {list(values)} ({files[name]}); one run needs one "
                              f"value: give {key}=...")
    settings.setdefault("run_name", name)
    return settings


def split_preset(argv: list[str]) -> tuple[str | None, list[str]]:
    """(the value of `--preset NAME` / `--preset=NAME`, argv without it)."""
    name, rest, i = None, [], 0
    while i < len(argv):
        flag, eq, value = argv[i].partition("=")
        if flag == "--preset":
            if not eq:
                i += 1
                if i >= len(argv):
                    raise PresetError("--preset needs a name, e.g. --preset frozen")
                value = argv[i]
            name = value
        else:
            rest.append(argv[i])
        i += 1
    return name, rest
