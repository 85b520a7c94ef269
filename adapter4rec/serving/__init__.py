"""Serving a finished run: `load_run(run_dir)` rebuilds it exactly as evaluation ranks (eval mode, the run's
precision) and answers recommendations, new items' embeddings, scores and evaluations (finished_run.py).
The command-line tools share its ranking code: recommend.py (top-K lists), export.py (a run as one checkpoint
file), new_items.py (items the run never saw, embedded from their content). Imported on first use, so
`python -m adapter4rec.serving.recommend` does not import itself twice."""

__all__ = ["FinishedRun", "load_run"]


def __getattr__(name: str):
    if name in __all__:
        from adapter4rec.serving import finished_run
        return getattr(finished_run, name)
    raise AttributeError(f"module 'adapter4rec.serving' has no attribute {name!r}")
