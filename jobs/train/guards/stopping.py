"""Stopping on request: SIGTERM (a preempted pod, `kubectl delete`) or SIGINT (Ctrl-C) saves a complete
checkpoint at the next optimizer step boundary and ends the job with exit 143; a second signal aborts
at once.

Every rank handles the signal itself. At each step boundary the ranks agree (one tiny all-reduce) on
whether any of them was asked to stop, so they stop at the same step and write one checkpoint together;
the completeness marker follows a barrier (jobs/train/guards/checkpoints.py).

A single process with gradient accumulation does not wait for the step to end: weights change only at
the optimizer step, so it stops at the next micro-batch, drops the partial gradients and saves the state
of the last finished step, its RNG state included (snapshotted at each step's end), so that the resumed
run is the uninterrupted one. Under DDP or ZeRO the ranks may be inside a collective mid-step and stop at
the step boundary: a step (with its accumulation) plus a checkpoint save must then fit in
TRAIN_STOP_GRACE_SECONDS, or the SIGKILL after it cuts the save off.
"""

from __future__ import annotations

import logging
import os
import random
import signal
import time
from types import FrameType
from typing import Any

from transformers import TrainerCallback

from jobs.errors import EXIT_TERMINATED
from jobs.monitor import writer

logger = logging.getLogger("jobs.train")

STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


class StopRequest:
    """Set by the first SIGTERM/SIGINT; the second one ends the process at once."""

    def __init__(self) -> None:
        self.signal_name: str | None = None
        # Once the stop's checkpoint is written nothing is left to lose: a later signal (the elastic agent
        # stopping the other ranks as one exits) must not cut the exit short.
        self.saved = False

    def install(self) -> None:
        for sig in STOP_SIGNALS:
            signal.signal(sig, self._handle)

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.saved:
            logger.info("%s received: the checkpoint is written, the job is exiting", name)
            return
        if self.signal_name is not None:
            logger.error("second %s: aborting now, without a checkpoint", name)
            logging.shutdown()
            os._exit(EXIT_TERMINATED)
        self.signal_name = name
        logger.warning("%s received: saving a checkpoint at the end of this step, then stopping (again: abort)", name)


class StopMidStep(Exception):
    """Raised before a micro-batch of a single-process step when a stop was requested (see the docstring)."""


class RngSnapshot:
    """The random states a checkpoint saves (transformers' `_save_rng_state`), taken and put back."""

    def __init__(self) -> None:
        self.states: dict[str, Any] | None = None

    def take(self) -> None:
        import numpy as np
        import torch

        cuda = torch.cuda.random.get_rng_state_all() if torch.cuda.is_available() else None
        self.states = {"python": random.getstate(), "numpy": np.random.get_state(),
                       "cpu": torch.random.get_rng_state(), "cuda": cuda}  # fmt: skip

    def restore(self) -> None:
        import numpy as np
        import torch

        if self.states is None:
            return
        random.setstate(self.states["python"])
        np.random.set_state(self.states["numpy"])
        torch.random.set_rng_state(self.states["cpu"])
        if self.states["cuda"] is not None:
            torch.cuda.random.set_rng_state_all(self.states["cuda"])


class StopAtStepEnd(TrainerCallback):
    """At each optimizer step's end: if any rank was asked to stop, every rank saves and stops here. A single
    process with gradient accumulation also stops between micro-batches (`StoppableSteps`)."""

    def __init__(self, request: StopRequest) -> None:
        self.request = request
        self.accelerator: Any = None  # set once the trainer exists; None in tests of a single process
        self.stopped_at: int | None = None
        self.step_end_rng = RngSnapshot()
        self.mid_step = False  # whether this run may stop between micro-batches

    def _anyone_asked(self) -> bool:
        asked = self.request.signal_name is not None
        if self.accelerator is None or self.accelerator.num_processes == 1:
            return asked
        import torch

        flag = torch.tensor([1.0 if asked else 0.0], device=self.accelerator.device)
        return bool(self.accelerator.reduce(flag, reduction="sum").item() > 0)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        single = self.accelerator is None or self.accelerator.num_processes == 1
        self.mid_step = single and args.gradient_accumulation_steps > 1
        if self.mid_step:
            self.step_end_rng.take()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self._anyone_asked():
            self.stopped_at = state.global_step
            control.should_save = True
            control.should_training_stop = True
        elif self.mid_step:
            self.step_end_rng.take()

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.stopped_at is not None:  # the trainer wrote the stop's checkpoint (the marker comes next)
            self.request.saved = True


class StoppableSteps:
    """Mixed into the method's trainer: before each micro-batch, a requested stop in a single process with
    gradient accumulation ends the step (`StopMidStep`; `save_stopped_mid_step` writes the checkpoint)."""

    stop_at_step_end: StopAtStepEnd

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        stop = self.stop_at_step_end
        if stop.mid_step and stop.request.signal_name is not None:
            raise StopMidStep
        return super().training_step(*args, **kwargs)  # type: ignore[misc]


def save_stopped_mid_step(trainer: Any, stop: StopAtStepEnd, complete: Any) -> None:
    """Save the last finished step after `StopMidStep`: its weights and optimizer are untouched (no optimizer
    step ran since); the partial gradients are dropped; its RNG state is put back before it is saved.
    `complete(step)` tells whether that step's checkpoint is already written, which is then kept as it is."""
    step = trainer.state.global_step
    stop.stopped_at = step
    logger.info("stopped between micro-batches of step %d: saving the state after step %d", step + 1, step)
    if step == 0 or complete(step):
        stop.request.saved = True
        return
    stop.step_end_rng.restore()
    trainer._save_checkpoint(trainer.model_wrapped, None)
    trainer.control = trainer.callback_handler.on_save(trainer.args, trainer.state, trainer.control)


class StopBudget(TrainerCallback):
    """Measures what a stop needs: the longest optimizer step plus the longest checkpoint save, the marker's
    checksums included (CheckpointMarker runs before this callback). When that
    exceeds TRAIN_STOP_GRACE_SECONDS, a SIGTERM would be cut off by the SIGKILL that follows: warn once,
    as soon as it is known, and export the figure (trainjob_stop_needed_seconds)."""

    def __init__(self, grace_seconds: float) -> None:
        self.grace = grace_seconds
        self.longest_step = 0.0
        self.longest_save = 0.0
        self._mark = time.monotonic()
        self.warned = False

    def on_step_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._mark = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        now = time.monotonic()
        self.longest_step = max(self.longest_step, now - self._mark)
        self._mark = now
        self._judge(state)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._mark = time.monotonic()  # an evaluation between a step and its save is not part of a stop

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.longest_save = max(self.longest_save, time.monotonic() - self._mark)
        self._judge(state)

    @property
    def needed(self) -> float:
        return self.longest_step + self.longest_save

    def _judge(self, state: Any) -> None:
        if not state.is_world_process_zero:
            return
        if writer.enabled():
            writer.job_metrics().stop_needed.set(self.needed)
        if self.needed > self.grace and not self.warned:
            self.warned = True
            logger.warning(
                "a stop needs %.1f s (a step: %.1f s, a checkpoint save: %.1f s so far), more than "
                "TRAIN_STOP_GRACE_SECONDS=%.0f: a SIGTERM now would be cut off by the SIGKILL after it. Raise the "
                "pod's terminationGracePeriodSeconds with TRAIN_STOP_GRACE_SECONDS, or shorten steps (batch, "
                "gradient accumulation, max_length) and saves (LoRA)",
                self.needed, self.longest_step, self.longest_save, self.grace,
            )  # fmt: skip
