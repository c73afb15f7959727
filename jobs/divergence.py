"""Divergence: every optimizer step's loss and gradient norm are checked; a run whose steps stay
non-finite stops and exits 6, and non-finite weights are never marked complete or published.

transformers would hide a diverged run: with `logging_nan_inf_filter` (off by default here) it logs
the running average instead of a NaN loss, and it saves and publishes whatever the weights hold.
Measured on the demo: `TRAIN_LEARNING_RATE=1e6 TRAIN_MAX_GRAD_NORM=0` logged `loss=0.0000`, exited 0
and published a final/ whose weights were all NaN.
"""

from __future__ import annotations

import logging
import math
from typing import Any

from transformers import TrainerCallback

from jobs.monitor import lifecycle as monitor

logger = logging.getLogger("jobs.train")


class StepHealth:
    """Whether the optimizer step under way met a non-finite loss or gradient norm, and the run's streak."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.step_is_bad = False
        self.streak = 0  # consecutive non-finite optimizer steps
        self.total = 0
        self.diverged_at: int | None = None

    def observe(self, value: Any) -> None:
        number = float(value.detach().float().sum()) if hasattr(value, "detach") else value
        if number is not None and not math.isfinite(number):
            self.step_is_bad = True

    def end_step(self, step: int) -> bool:
        """Close the step; True when the run has diverged."""
        if self.step_is_bad:
            self.streak += 1
            self.total += 1
            logger.warning("step %d: the loss or the gradient norm is not finite (%d in a row)", step, self.streak)
        else:
            self.streak = 0
        self.step_is_bad = False
        if self.streak >= self.limit and self.diverged_at is None:
            self.diverged_at = step
        return self.diverged_at is not None


class CheckedSteps:
    """Mixed into the method's TRL trainer: hands each micro-batch loss and each step's gradient norm to
    `self.step_health` (the two hooks transformers calls once per micro-batch and once per optimizer step)."""

    step_health: StepHealth

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        loss = super().training_step(*args, **kwargs)  # type: ignore[misc]
        self.step_health.observe(loss)
        return loss

    def _get_grad_norm(self, *args: Any, **kwargs: Any) -> Any:
        norm = super()._get_grad_norm(*args, **kwargs)  # type: ignore[misc]
        self.step_health.observe(norm)
        return norm


def with_checked_steps(trainer_class: type[Any]) -> type[Any]:
    return type(trainer_class.__name__, (CheckedSteps, trainer_class), {})


class DivergenceStop(TrainerCallback):
    """Ends training once `limit` optimizer steps in a row were non-finite."""

    def __init__(self, health: StepHealth) -> None:
        self.health = health

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        bad = self.health.step_is_bad
        if self.health.end_step(state.global_step):
            control.should_training_stop = True
            control.should_save = False  # a checkpoint of these weights must never be resumed from
        if bad and state.is_world_process_zero and monitor.enabled():
            monitor.job_metrics().nonfinite.inc()


def weights_are_finite(model: Any) -> bool:
    """One pass over the weights (integer weights, as in 4-bit layers, are finite by nature)."""
    import torch

    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point())
