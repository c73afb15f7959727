"""What a person sees of a running training: a log line per logging step, and a bar in a terminal.

Both report from global rank 0 only. The bar is drawn when stderr is a terminal and the log format is
text; the per-step lines then go to the log file only. In pods (stderr is not a terminal) there is
no bar, only the lines.
"""

from __future__ import annotations

import logging
import math
import sys
import time
from typing import Any

from transformers import TrainerCallback

from jobs.logs import STEP_LINE, ConsoleHandler

logger = logging.getLogger("jobs.train")


def wants_progress_bar(log_format: str) -> bool:
    return sys.stderr.isatty() and log_format == "text"


class StepLogger(TrainerCallback):
    """One log line per logging step (step, loss, lr, tokens/s), in the job's log format."""

    def __init__(self) -> None:
        self._last_time = time.monotonic()
        self._last_tokens: float | None = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        # A fresh run starts from zero tokens; after a resume the count is unknown until the first log.
        self._last_time = time.monotonic()
        self._last_tokens = 0.0 if state.global_step == 0 else None

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if not state.is_world_process_zero or not logs:
            return
        fields = {key.replace("/", "_"): value for key, value in logs.items() if isinstance(value, (int, float))}
        fields["step"] = state.global_step
        fields["max_steps"] = state.max_steps
        if "loss" in logs:
            self._add_throughput(fields, logs)
            throughput = f"{fields['tokens_per_second']:.0f}" if "tokens_per_second" in fields else "-"
            message = "step %d/%d loss=%.4f lr=%.3g tokens/s=%s"
            values = (state.global_step, state.max_steps, logs["loss"], logs.get("learning_rate", math.nan), throughput)
            logger.info(message, *values, extra={**fields, STEP_LINE: True})
        elif "eval_loss" in logs:
            logger.info("step %d eval_loss=%.4f", state.global_step, logs["eval_loss"], extra=fields)
        elif "train_runtime" in logs:
            logger.info("training finished in %.1f s", logs["train_runtime"], extra=fields)

    def _add_throughput(self, fields: dict[str, Any], logs: dict[str, float]) -> None:
        now, tokens = time.monotonic(), logs.get("num_tokens")
        if tokens is not None and self._last_tokens is not None and now > self._last_time:
            fields["tokens_per_second"] = (tokens - self._last_tokens) / (now - self._last_time)
        self._last_time, self._last_tokens = now, tokens


class ProgressBar(TrainerCallback):
    """A tqdm bar on a terminal: steps done of all, rate, ETA, and the last loss and learning rate."""

    def __init__(self) -> None:
        self.bar: Any = None

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        from tqdm.auto import tqdm

        self.bar = tqdm(
            total=state.max_steps, initial=state.global_step, unit="step", desc="training", file=sys.stderr,
            dynamic_ncols=True,
        )  # fmt: skip
        ConsoleHandler.bar = self.bar

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.update(state.global_step - self.bar.n)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, float] | None = None, **kwargs: Any) -> None:
        if self.bar is not None and logs and "loss" in logs:
            self.bar.set_postfix(loss=f"{logs['loss']:.4f}", lr=f"{logs.get('learning_rate', math.nan):.3g}")

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.bar is not None:
            self.bar.close()
            ConsoleHandler.bar = self.bar = None
