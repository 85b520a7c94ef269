"""Serving a finished run from Python: `load_run(run_dir)` rebuilds it exactly as evaluation ranks (eval mode, the
run's precision) and answers recommendations, new items' embeddings, scores and evaluations (finished_run.py).
The command-line tools (recommend, export) share its ranking code."""
from adapter4rec.serving.finished_run import FinishedRun, load_run

__all__ = ["FinishedRun", "load_run"]
