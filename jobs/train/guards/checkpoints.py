"""Checkpoints: a completeness marker, and resume from the newest complete one.

A checkpoint directory counts only once the marker is written after the trainer finished saving it,
so a pod killed mid-save resumes from the previous checkpoint instead of a half-written one.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from jobs.layout import COMPLETE_MARKER, OutputLayout
from jobs.train.guards.divergence import weights_are_finite

logger = logging.getLogger(__name__)


class CheckpointMarker(TrainerCallback):
    """Write the completeness marker into each checkpoint once every rank has saved all of it, and keep the
    newest complete checkpoint out of the trainer's rotation (save_total_limit), which would otherwise
    delete it to make room for a newer one that may never become complete.

    The rotation spares `state.best_model_checkpoint`; the job points it at the newest complete checkpoint
    unless the user ranks checkpoints by a metric (TRAIN_METRIC_FOR_BEST_MODEL), which then decides.
    """

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        newest = latest_complete_checkpoint(OutputLayout(Path(args.output_dir)))
        if newest is not None and args.metric_for_best_model is None:
            state.best_model_checkpoint = str(newest)

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        from accelerate import PartialState

        PartialState().wait_for_everyone()  # every rank has written its part (its RNG state, its shards)
        if not state.is_world_process_zero:
            return
        directory = OutputLayout(Path(args.output_dir)).checkpoint(state.global_step)
        if model is not None and not weights_are_finite(model):
            logger.error("%s holds non-finite weights: not marked complete, never resumed from", directory)
            return
        if directory.is_dir():
            (directory / COMPLETE_MARKER).write_text(f"{state.global_step}\n", encoding="utf-8")
            logger.info("checkpoint saved: %s", directory)
            if args.metric_for_best_model is None:
                state.best_model_checkpoint = str(directory)


def latest_complete_checkpoint(layout: OutputLayout) -> Path | None:
    """The complete checkpoint with the highest step, or None; incomplete ones are reported and skipped."""
    complete = None
    for _step, directory in layout.checkpoints():
        if layout.is_complete(directory):
            complete = directory
        else:
            why = "its save was interrupted, or its weights were not finite"
            logger.warning("skipping %s: it has no %s marker (%s)", directory, COMPLETE_MARKER, why)
    return complete
