"""The trainer callback that turns TRL's progress and logs into the job's metrics (global rank 0 only)."""

from __future__ import annotations

from typing import Any

from transformers import TrainerCallback

from jobs.methods.base import Method
from jobs.monitor.writer import job_metrics
from jobs.train.guards.peak_memory import PeakWatch


class MetricsCallback(TrainerCallback):
    def __init__(self, method: Method, memory: PeakWatch) -> None:
        self.metrics = job_metrics()
        self.method = method
        self.memory = memory

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            by_steps = str(getattr(args.save_strategy, "value", args.save_strategy)) == "steps"
            self.metrics.start_training(state.global_step, state.max_steps, args.save_steps if by_steps else None)

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.metrics.step(state.global_step, state.max_steps)

    def on_log(self, args: Any, state: Any, control: Any, logs: dict[str, Any] | None = None, **kwargs: Any) -> None:
        if state.is_world_process_zero and logs:
            self.metrics.log(logs, self.method)
            self.metrics.cuda_peaks()
            self.metrics.memory_peak.set(self.memory.peak())

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if state.is_world_process_zero:
            self.metrics.checkpoint_saved()
