"""Training one run: `train.run(cfg)` / `train.fit(**settings)` drive it; `assemble.build_run` puts the run
together (seed -> data -> model -> source or warm start -> adapters -> trainable set -> state cache) from the
pieces in build.py; optim.py holds the optimiser groups, original.py the original code's checkpoint import,
tb.py the TensorBoard writer. run.py (Pretraining/, Downstream/) calls `train.run`; `adapter4rec.fit` is the same from Python."""
