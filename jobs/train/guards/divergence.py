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

from jobs.monitor import writer

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
    `self.step_health` (the two hooks transformers calls once per micro-batch and once per optimizer step),
    and adds the training-state readings to each training log line."""

    step_health: StepHealth
    training_state: TrainingState

    def log(self, logs: dict[str, float], *args: Any, **kwargs: Any) -> None:
        if "loss" in logs:
            logs.update(self.training_state.take(logs, self.state.global_step))  # type: ignore[attr-defined]
        super().log(logs, *args, **kwargs)  # type: ignore[misc]

    def training_step(self, *args: Any, **kwargs: Any) -> Any:
        loss = super().training_step(*args, **kwargs)  # type: ignore[misc]
        self.step_health.observe(loss)
        return loss

    def _get_grad_norm(self, *args: Any, **kwargs: Any) -> Any:
        norm = super()._get_grad_norm(*args, **kwargs)  # type: ignore[misc]
        self.step_health.observe(norm)
        return norm


class DivergenceStop(TrainerCallback):
    """Ends training once `limit` optimizer steps in a row were non-finite."""

    def __init__(self, health: StepHealth) -> None:
        self.health = health

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        bad = self.health.step_is_bad
        if self.health.end_step(state.global_step):
            control.should_training_stop = True
            control.should_save = False  # a checkpoint of these weights must never be resumed from
        if bad and state.is_world_process_zero and writer.enabled():
            writer.job_metrics().nonfinite.inc()


def weights_are_finite(model: Any) -> bool:
    """One pass over the weights (integer weights, as in 4-bit layers, are finite by nature)."""
    import torch

    with torch.no_grad():
        return all(bool(torch.isfinite(p).all()) for p in model.parameters() if p.is_floating_point())


# Training-state thresholds, checked at each logging step (warnings, not stops):
UPDATE_RATIO_HIGH = 1e-1  # updates of 10 % of the weights a step: the learning rate is far too high
UPDATE_RATIO_LOW = 1e-7  # healthy runs sit around 1e-3; below this the weights barely move
GRAD_EXPLODING = 10.0  # a gradient norm this many times its median so far (after 5 readings)
GRAD_VANISHED = 1e-8


class TrainingState:
    """The parameter norm and the update-to-parameter ratio of the last step before each log line, read in
    `ReadTrainingState` and added to the log by `CheckedSteps.log`; warnings when gradients or updates
    explode or vanish. The update is AdamW's (torch's Adam/AdamW states); other optimizers, and weights
    sharded by DeepSpeed or FSDP, get no reading."""

    def __init__(self) -> None:
        self.pending: dict[str, float] = {}
        self.grad_norms: list[float] = []

    def take(self, logs: dict[str, float], step: int) -> dict[str, float]:
        readings, self.pending = self.pending, {}
        self._judge(readings, logs.get("grad_norm"), step, logs.get("learning_rate"))
        return readings

    def _judge(self, readings: dict[str, float], grad_norm: float | None, step: int, lr: float | None) -> None:
        ratio = readings.get("update_ratio")
        if lr == 0:  # warmup's first step (or a schedule's last): no update is expected
            ratio = None
        if ratio is not None and ratio > UPDATE_RATIO_HIGH:
            logger.warning("step %d: updates move the weights by %.1f%% a step: the learning rate is far too high "
                           "(healthy runs: around 0.1%%)", step, 100 * ratio)  # fmt: skip
        elif ratio is not None and ratio < UPDATE_RATIO_LOW:
            logger.warning("step %d: updates move the weights by %.1e of their norm a step: the learning rate is "
                           "too low or the gradients vanished", step, ratio)  # fmt: skip
        if grad_norm is None or not math.isfinite(grad_norm):
            return
        earlier = sorted(self.grad_norms)
        if len(earlier) >= 5 and grad_norm > GRAD_EXPLODING * earlier[len(earlier) // 2]:
            what = "gradients are exploding; keep TRAIN_MAX_GRAD_NORM on and lower the learning rate"
            logger.warning("step %d: the gradient norm %.3g is over %.0fx its median so far: %s",
                           step, grad_norm, GRAD_EXPLODING, what)  # fmt: skip
        elif grad_norm < GRAD_VANISHED:
            logger.warning("step %d: the gradient norm is %.1e: gradients vanished", step, grad_norm)
        self.grad_norms.append(grad_norm)


# Elements of a weight read for the update norm: a strided sample of larger tensors. The exact norm reads
# the two AdamW moments and the weights whole, several passes over the model at every log line (0.6-1.4 s
# a reading on a 76M model on CPU, 2-4 % of its training time at a log line every 10 steps).
UPDATE_SAMPLE = 1 << 16


def _sampled(tensor: Any, stride: int) -> Any:
    return tensor.detach().reshape(-1)[::stride]


def adamw_update_norm(optimizer: Any) -> float | None:
    """The norm of the update AdamW just applied, from its moments; None for other optimizers. Tensors over
    UPDATE_SAMPLE elements contribute a strided sample of their elements, scaled to the whole: the ratio it
    feeds is a health reading whose warnings sit orders of magnitude apart."""
    import torch

    inner = getattr(optimizer, "optimizer", optimizer)  # accelerate wraps it
    if not isinstance(inner, (torch.optim.AdamW, torch.optim.Adam)):
        return None
    total = 0.0
    for group in inner.param_groups:
        beta1, beta2 = group["betas"]
        for param in group["params"]:
            state = inner.state.get(param, {})
            if "exp_avg" not in state:
                continue
            stride = max(1, param.numel() // UPDATE_SAMPLE)
            step = float(state["step"])
            moment = _sampled(state["exp_avg"], stride) / (1 - beta1**step)
            scale = (_sampled(state["exp_avg_sq"], stride) / (1 - beta2**step)).sqrt_().add_(group["eps"])
            update = moment.div_(scale).add_(_sampled(param, stride), alpha=group["weight_decay"]).mul_(group["lr"])
            total += float(update.float().pow(2).sum()) * param.numel() / update.numel()
    return math.sqrt(total)


class ReadTrainingState(TrainerCallback):
    """Reads the weights and AdamW's update right after each optimizer step that will be logged."""

    def __init__(self, readings: TrainingState) -> None:
        self.readings = readings

    def on_optimizer_step(self, args: Any, state: Any, control: Any, model: Any = None, optimizer: Any = None,
                          **kwargs: Any) -> None:  # fmt: skip
        logging_steps = int(state.logging_steps or 0)
        if model is None or logging_steps < 1 or (state.global_step + 1) % logging_steps:
            return
        if getattr(args, "deepspeed", None) or getattr(args, "fsdp", None):
            return  # sharded weights: a rank's norm is not the model's
        import torch

        with torch.no_grad():
            norms = [p.detach().float().norm() for p in model.parameters() if p.requires_grad]
            param_norm = float(torch.stack(norms).norm()) if norms else 0.0
        self.readings.pending = {"param_norm": param_norm}
        update = adamw_update_norm(optimizer)
        if update is not None and param_norm > 0:
            self.readings.pending["update_ratio"] = update / param_norm
