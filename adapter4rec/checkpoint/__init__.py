"""Checkpoints: what a run saves and how weights come back into a model.

files.py: the format (one dict: format, config, kind, model, inputs, epoch, metrics), atomic writes, reading with
one-line errors, epoch copies and their pruning, the input files a run is pinned to, and the same checkpoint as a
.safetensors file (an export for other tools); loading.py: a source checkpoint or a run's own
weights into a model, every key and shape checked; warm_start.py: a finished target run as the start of another.
The names used elsewhere are importable from here."""
from adapter4rec.checkpoint.files import (DISK_FULL, EPOCH_FILE, FORMAT, PINNED_INPUTS, CheckpointError,
                                          ForeignCheckpointError, check_pinned, checkpoint_of, epoch_path,
                                          pinned_inputs, prune_epoch_checkpoints, read_checkpoint, save_atomic)
from adapter4rec.checkpoint.loading import (ADAPTER_SETTINGS, FROZEN_BACKBONE, MUST_MATCH, TARGET_ONLY,
                                            fresh_on_target, load_run_weights, load_source, mismatches)
from adapter4rec.checkpoint.warm_start import (WARM_MATCH, WARM_MATCH_IF, WARM_TOWERS, finish_warm_start,
                                               load_warm_start, warm_mismatches)

__all__ = ["DISK_FULL", "EPOCH_FILE", "FORMAT", "PINNED_INPUTS", "CheckpointError", "ForeignCheckpointError",
           "check_pinned", "checkpoint_of", "epoch_path", "pinned_inputs", "prune_epoch_checkpoints",
           "read_checkpoint", "save_atomic", "ADAPTER_SETTINGS", "FROZEN_BACKBONE", "MUST_MATCH", "TARGET_ONLY",
           "fresh_on_target", "load_run_weights", "load_source", "mismatches", "WARM_MATCH", "WARM_MATCH_IF",
           "WARM_TOWERS", "finish_warm_start", "load_warm_start", "warm_mismatches"]
