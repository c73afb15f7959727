"""One training process's run: build the trainer, resume from the newest complete checkpoint, train, publish.

What every method shares around TRL's trainers lives in jobs/train/; what differs is declared in the
method's file (jobs/methods/). Imported only by training processes (it pulls in torch and transformers).
Every expected failure is raised as a JobError (jobs/errors.py), running out of memory included, for the
one place that turns it into an exit code.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import transformers
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from jobs.config.resolved import ResolvedRun
from jobs.errors import JobError, TerminatedBySignal, TrainingDiverged
from jobs.layout import OutputLayout
from jobs.monitor import writer
from jobs.train.guards.checkpoints import is_volume_full, latest_complete_checkpoint, volume_full
from jobs.train.guards.peak_memory import is_out_of_memory, out_of_memory
from jobs.train.guards.progress import ProgressBar
from jobs.train.guards.stopping import StopMidStep, StopRequest, save_stopped_mid_step
from jobs.train.publish import save_final
from jobs.train.trainer import Guards, build_trainer

logger = logging.getLogger("jobs.train")

# Progress bars are for terminals; the job draws its own (jobs/train/guards/progress.py).
transformers.utils.logging.disable_progress_bar()


def train(run: ResolvedRun) -> None:
    """Train the run in this process; a JobError for every expected failure."""
    try:
        _train(run)
    except JobError:
        raise
    except Exception as error:
        if is_out_of_memory(error):
            raise out_of_memory(error, run) from error
        if is_volume_full(error, run.config.output_dir):
            raise volume_full(run) from error
        raise


def _train(run: ResolvedRun) -> None:
    request = StopRequest()
    request.install()  # from here on, SIGTERM/SIGINT save and stop instead of killing the process
    guards = Guards.for_run(run, request)
    trainer, tokenizer = build_trainer(run, guards)
    if request.signal_name is not None:  # asked to stop while loading: nothing new to save
        raise TerminatedBySignal(f"{request.signal_name} before the first step; nothing was lost")
    quiet_library_output(trainer)
    layout = run.layout
    resume = latest_complete_checkpoint(layout)
    if resume is not None:
        logger.info("resuming from %s", resume)
    if trainer.is_world_process_zero():
        logger.info("training %s on %d records", run.method, len(trainer.train_dataset))
    _run(trainer, guards, layout, resume)
    if trainer.is_world_process_zero():
        guards.memory.log_summary(run)
    health, stopped_at = guards.health, guards.stop.stopped_at
    if stopped_at is not None and health.diverged_at is None:
        newest = latest_complete_checkpoint(layout)
        after = f"{newest} is complete, and a restart resumes from it" if newest else "a restart starts over"
        raise TerminatedBySignal(f"{request.signal_name} at step {stopped_at}; {after}")
    if health.diverged_at is not None:
        raise TrainingDiverged(
            f"the loss or gradient norm was NaN or infinite for {health.streak} optimizer steps in a row, up to "
            f"step {health.diverged_at}; training stopped and nothing was published. The newest complete "
            f"checkpoint is {latest_complete_checkpoint(layout) or 'none'}. Lower TRAIN_LEARNING_RATE, keep "
            "TRAIN_MAX_GRAD_NORM above 0, prefer bf16 to fp16, and look for extreme records in the data"
        )
    if trainer.is_world_process_zero():
        writer.set_phase("saving")
    save_final(trainer, run, tokenizer)


def _run(trainer: Any, guards: Guards, layout: OutputLayout, resume: Path | None) -> None:
    try:
        trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    except StopMidStep:
        save_stopped_mid_step(trainer, guards.stop, lambda step: layout.is_complete(layout.checkpoint(step)))
    finally:
        for callback in trainer.callback_handler.callbacks:
            if isinstance(callback, ProgressBar):  # a crash skips on_train_end: put the terminal back
                callback.on_train_end(trainer.args, trainer.state, trainer.control)


def quiet_library_output(trainer: Any) -> None:
    """Route transformers' logging through ours and drop its print()-based progress callbacks."""
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
