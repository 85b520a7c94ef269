"""Adapter4Rec: transferable sequential recommendation from item content, with adapter-based transfer.

The Python API (docs/api.md): `fit(**settings)` trains and tests one run, as run.py and the launchers do, and
returns its results; `load_run(run_dir)` gives a finished run to recommend from, embed new items, score and
evaluate (serving/). Imported on first use, so `import adapter4rec` stays light."""

__all__ = ["fit", "load_run"]


def __getattr__(name: str):
    if name == "load_run":
        from adapter4rec.serving import load_run
        return load_run
    if name == "fit":
        from adapter4rec.training.train import fit
        return fit
    raise AttributeError(f"module 'adapter4rec' has no attribute {name!r}")
