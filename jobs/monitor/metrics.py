"""The job's metrics and the one object that writes them (any process; values go to the shared directory).

Import this module only through jobs/monitor/writer.py, once PROMETHEUS_MULTIPROC_DIR is set:
prometheus_client picks its value storage (files shared by the job's processes, or memory) when it is
first imported. Each method's own metrics (`trainjob_<method>_<name>`) come from its registry entry
(jobs/methods/).
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge

from jobs.methods import METHODS
from jobs.methods.base import Method

PHASES = ("validating", "loading", "training", "saving", "done", "failed")
# TRL log key -> (gauge name without the prefix, help), for every method.
LOG_GAUGES = {
    "loss": ("loss", "Training loss at the last logging step."),
    "eval_loss": ("eval_loss", "Evaluation loss at the last evaluation."),
    "learning_rate": ("learning_rate", "Learning rate at the last logging step."),
    "grad_norm": ("grad_norm", "Gradient norm (before clipping) at the last logging step."),
    "epoch": ("epoch", "Fractional epoch at the last logging step."),
    "param_norm": ("param_norm", "Norm of the trained weights at the last logging step."),
    "update_ratio": ("update_ratio", "Norm of the last AdamW update over the norm of the trained weights."),
}


def _gauge(name: str, documentation: str, registry: CollectorRegistry, labels: tuple[str, ...] = ()) -> Gauge:
    # "mostrecent": the value last written by any process of the job, kept after that process exits.
    return Gauge(f"trainjob_{name}", documentation, labels, registry=registry, multiprocess_mode="mostrecent")


class JobMetrics:
    """Every metric of the contract; each update is O(1) (a write into a memory-mapped file)."""

    def __init__(self) -> None:
        registry = CollectorRegistry()  # never served from here: the server process reads the files
        self.info = _gauge("info", "Job identity; the value is 1.", registry, ("method", "model", "run_id"))
        self.phase = _gauge("phase", "1 for the job's current phase, 0 for the others.", registry, ("phase",))
        self.global_step = _gauge("global_step", "Optimizer steps done.", registry)
        self.max_steps = _gauge("max_steps", "Optimizer steps planned.", registry)
        self.progress = _gauge("progress_ratio", "global_step / max_steps (0..1).", registry)
        self.eta = _gauge("eta_seconds", "Estimated seconds to the last step, from this run's step rate.", registry)
        self.last_step = _gauge("last_step_timestamp_seconds", "Unix time of the last optimizer step.", registry)
        self.last_checkpoint = _gauge(
            "last_checkpoint_timestamp_seconds",
            "Unix time of the last complete checkpoint (of the start of training, before the first one).",
            registry,
        )
        self.loading_started = _gauge(
            "loading_started_timestamp_seconds",
            "Unix time the job began loading (model, TRL's tokenisation, the rendezvous), after preflight.",
            registry,
        )
        self.loading_threshold = _gauge(
            "loading_threshold_seconds",
            "How long loading may take before TrainJobLoadingTooLong (TRAIN_LOADING_TIMEOUT, or derived).",
            registry,
        )
        self.save_steps = _gauge("save_steps", "Optimizer steps between checkpoints (absent: not by steps).", registry)
        self.stop_needed = _gauge(
            "stop_needed_seconds",
            "Longest optimizer step plus longest checkpoint save so far: what a SIGTERM stop needs.",
            registry,
        )
        self.stop_grace = _gauge("stop_grace_seconds", "TRAIN_STOP_GRACE_SECONDS: what a stop may take.", registry)
        self.exit_code = _gauge("exit_code", "The job's exit code, once it has one (see README).", registry)
        self.logged = {name: _gauge(name, text, registry) for name, text in LOG_GAUGES.values()}
        for method in METHODS.values():  # every method's, so the exporter's series do not depend on the run
            self.logged.update({f"{method.name}_{m.name}": _gauge(f"{method.name}_{m.name}", m.help, registry)
                                for m in method.metrics})  # fmt: skip
        self.tokens = Counter("trainjob_tokens", "Tokens trained on (TRL num_tokens).", registry=registry)
        self.checkpoints = Counter("trainjob_checkpoints", "Complete checkpoints written.", registry=registry)
        self.nonfinite = Counter(
            "trainjob_nonfinite_loss",
            "Optimizer steps whose loss or gradient norm was NaN or infinite.",
            registry=registry,
        )
        self.memory_estimate = _gauge(
            "memory_estimate_bytes",
            "Estimated peak memory of one training process, above what it held before its model loaded.",
            registry,
        )
        self.memory_peak = _gauge(
            "memory_peak_bytes",
            "Measured peak of the same (resident memory on CPU, torch's reserved bytes on a GPU), rank 0.",
            registry,
        )
        self.cuda_allocated = _gauge(
            "torch_cuda_max_allocated_bytes", "Peak bytes allocated by torch on this GPU.", registry, ("gpu",)
        )
        self.cuda_reserved = _gauge(
            "torch_cuda_max_reserved_bytes", "Peak bytes reserved by torch's caching allocator.", registry, ("gpu",)
        )
        self.samples_stopped = _gauge(
            "samples_stopped_ratio",
            "Share of the last round of samples (TRAIN_SAMPLES) that ended on an end-of-sequence id.",
            registry,
        )
        self.samples_seconds = _gauge(
            "samples_generation_seconds", "Seconds the last round of samples took to generate.", registry
        )
        self._tokens_seen: float | None = None
        self._train_start: tuple[float, int] | None = None

    def set_phase(self, phase: str) -> None:
        for name in PHASES:
            self.phase.labels(phase=name).set(1 if name == phase else 0)

    def start_loading(self, threshold_seconds: float) -> None:
        self.loading_started.set(time.time())
        self.loading_threshold.set(threshold_seconds)
        self.set_phase("loading")

    def set_info(self, method: str, model: str, run_id: str) -> None:
        self.info.labels(method=method, model=model, run_id=run_id).set(1)

    def start_training(self, global_step: int, max_steps: int, save_steps: float | None) -> None:
        now = time.time()
        # The stall and checkpoint-age alerts count from here until the first step and checkpoint.
        self.last_step.set(now)
        self.last_checkpoint.set(now)
        if save_steps:
            self.save_steps.set(save_steps)
        self._train_start = (time.monotonic(), global_step)
        self._tokens_seen = 0.0 if global_step == 0 else None  # after a resume: counted from the first log
        self.global_step.set(global_step)
        self.max_steps.set(max_steps)
        self.set_phase("training")

    def step(self, global_step: int, max_steps: int) -> None:
        now = time.time()
        self.global_step.set(global_step)
        self.last_step.set(now)
        if max_steps > 0:
            self.progress.set(min(1.0, global_step / max_steps))
            self._update_eta(global_step, max_steps)

    def _update_eta(self, global_step: int, max_steps: int) -> None:
        if self._train_start is None:
            return
        started, first_step = self._train_start
        done = global_step - first_step
        if done > 0:
            self.eta.set((time.monotonic() - started) / done * max(0, max_steps - global_step))

    def log(self, logs: dict[str, Any], method: Method) -> None:
        """TRL's logged values: the shared ones, and those of the running method."""
        names = {key: name for key, (name, _) in LOG_GAUGES.items()}
        names.update({m.log_key: f"{method.name}_{m.name}" for m in method.metrics})
        for key, name in names.items():
            value = logs.get(key)
            if isinstance(value, (int, float)):
                self.logged[name].set(value)
        tokens = logs.get("num_tokens")
        if isinstance(tokens, (int, float)):
            # num_tokens is cumulative (and restored on resume): count only what this process added.
            if self._tokens_seen is not None and tokens > self._tokens_seen:
                self.tokens.inc(tokens - self._tokens_seen)
            self._tokens_seen = tokens

    def samples(self, stopped_ratio: float, seconds: float) -> None:
        self.samples_stopped.set(stopped_ratio)
        self.samples_seconds.set(seconds)

    def checkpoint_saved(self) -> None:
        self.checkpoints.inc()
        self.last_checkpoint.set(time.time())

    def cuda_peaks(self) -> None:
        """Peak torch allocator bytes per visible GPU (the training process alone knows them)."""
        import torch

        if not torch.cuda.is_available():
            return
        for index in range(torch.cuda.device_count()):
            self.cuda_allocated.labels(gpu=str(index)).set(torch.cuda.max_memory_allocated(index))
            self.cuda_reserved.labels(gpu=str(index)).set(torch.cuda.max_memory_reserved(index))
