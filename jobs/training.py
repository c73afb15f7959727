"""One training process: settings, data, model and trainer for the chosen method, the run, the final save.

What every method shares around TRL's trainers lives here; what differs is declared in the method's
file (jobs/methods/). Imported only by training processes (it pulls in torch and transformers).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transformers
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from jobs import attention, batching
from jobs.checkpoints import CheckpointMarker, discard, latest_complete_checkpoint, publish_final
from jobs.config import JobConfig, redact
from jobs.defaults import Device, training_settings
from jobs.divergence import (
    CheckedSteps,
    DivergenceStop,
    ReadTrainingState,
    StepHealth,
    TrainingState,
    weights_are_finite,
)
from jobs.errors import ConfigError, JobError, TerminatedBySignal, TrainingDiverged
from jobs.layout import OutputLayout
from jobs.manifest import build_manifest
from jobs.memory import PeakWatch
from jobs.methods.base import Method
from jobs.model import build_model_config, load_model, load_tokenizer, peft_config
from jobs.monitor import lifecycle as monitor
from jobs.progress import ProgressBar, StepLogger, wants_progress_bar
from jobs.stopping import StopAtStepEnd, StopBudget, StopMidStep, StoppableSteps, StopRequest, save_stopped_mid_step
from jobs.topology import accelerate_settings

logger = logging.getLogger("jobs.train")

# Progress bars are for terminals; the job draws its own (jobs/progress.py).
transformers.utils.logging.disable_progress_bar()


def build_training_args(config: JobConfig, method: Method, device: Device, has_eval: bool) -> Any:
    """The method's TRL config: job defaults (jobs/defaults.py), then whatever the user set.

    The Hub token goes to the environment instead (HF_TOKEN, where huggingface_hub looks): transformers
    pickles the whole config into training_args.bin in every checkpoint and in final/.
    """
    settings = {**training_settings(device, has_eval, config.training), "output_dir": str(config.output_dir)}
    token = settings.pop("hub_token", None)
    if token:
        os.environ["HF_TOKEN"] = token
    try:
        return method.config_class()(**settings)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"TRL rejected the training settings: {error}") from None


def load_prepared_data(layout: OutputLayout) -> tuple[Any, Any]:
    """The records preflight validated and split, as datasets (never a second parse of the user's file)."""
    import datasets
    from datasets import Dataset

    datasets.disable_progress_bars()
    if not layout.train_data.is_file():
        raise JobError(f"{layout.train_data} is missing: run the job through entrypoint.py, which validates the data")
    cache = str(layout.data_cache)
    train = Dataset.from_json(str(layout.train_data), cache_dir=cache)
    evaluation = Dataset.from_json(str(layout.eval_data), cache_dir=cache) if layout.eval_data.is_file() else None
    return train, evaluation


@dataclass
class Guards:
    """What watches one run: stop requests, non-finite steps, what a stop needs, the training state."""

    stop: StopAtStepEnd
    health: StepHealth
    budget: StopBudget
    readings: TrainingState
    memory: PeakWatch

    @classmethod
    def for_run(cls, config: JobConfig, request: StopRequest) -> Guards:
        return cls(StopAtStepEnd(request), StepHealth(limit=config.job.max_nonfinite_steps),
                   StopBudget(config.job.stop_grace_seconds), TrainingState(), PeakWatch())  # fmt: skip

    def callbacks(self) -> list[TrainerCallback]:
        # The stop comes before DivergenceStop, so that divergence can cancel a stop's save of non-finite weights.
        return [self.stop, DivergenceStop(self.health), self.budget, ReadTrainingState(self.readings)]


def callbacks(config: JobConfig, method: Method, guards: Guards) -> list[TrainerCallback]:
    found: list[TrainerCallback] = [*guards.callbacks(), StepLogger(), CheckpointMarker()]
    if wants_progress_bar():
        found.append(ProgressBar())
    if config.job.profile:
        from jobs.profiling import StepProfiler

        found.append(StepProfiler(config.job.profile, config.layout.profile))
    if monitor.enabled():  # in jobs whose entrypoint runs an exporter
        from jobs.monitor.callback import MetricsCallback

        found.append(MetricsCallback(method, guards.memory))
    return found


def start_deepspeed_early(config: JobConfig, device: Device) -> None:
    """Under DeepSpeed on CPU, join the process group over gloo before any config or model exists. ZeRO-3 was
    seen to size its batch for one process when a model loads after the DeepSpeed config is built (a model
    given by path, a reference created later) and fail with "train_batch_size is not equal to
    micro_batch_per_gpu * ..."; the job's own load order does not hit it today, and starting early keeps
    it that way whatever loads when. On a GPU, transformers starts the group over NCCL itself."""
    if device.gpu or accelerate_settings(config.accelerate_config).get("distributed_type") != "DEEPSPEED":
        return
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")


def guarded(trainer_class: type[Any]) -> type[Any]:
    """The method's trainer with the per-micro-batch hooks: stop between micro-batches, check each step."""
    return type(trainer_class.__name__, (StoppableSteps, CheckedSteps, trainer_class), {})


def build_trainer(config: JobConfig, method: Method, guards: Guards) -> tuple[Any, Any]:
    """The method's TRL trainer and tokenizer, in the order that fails cheapest first."""
    device = Device.probe_torch()
    start_deepspeed_early(config, device)
    model_args = build_model_config(config.model, device)
    train_dataset, eval_dataset = load_prepared_data(config.layout)
    args = build_training_args(config, method, device, has_eval=eval_dataset is not None)
    train_dataset = method.prepare_dataset(train_dataset, args.seed)
    if eval_dataset is not None:
        eval_dataset = method.prepare_dataset(eval_dataset, args.seed)
    if "tensorboard" in args.report_to:  # read by transformers' TensorBoardCallback when it is created
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(config.layout.tensorboard))
    tokenizer = load_tokenizer(model_args)
    if batching.choose(method, config.training, model_args, args):
        logger.info("padding-free batches: each step's records end to end, no padding (see jobs/batching.py)")
    if attention.choose(model_args, args):
        logger.info("padding-free batches: attention per packed sequence (%s, see jobs/attention.py)", attention.NAME)
    guards.memory.start()
    model = load_model(model_args, trust_remote_code=args.trust_remote_code)
    try:
        trainer = guarded(batching.trainer_class(method, args))(
            model=model,
            args=args,
            train_dataset=train_dataset,
            eval_dataset=eval_dataset,
            processing_class=tokenizer,
            peft_config=peft_config(model_args),
            callbacks=callbacks(config, method, guards),
        )
    except ValueError as error:  # TRL checks combinations of settings when the trainer is built
        raise ConfigError(f"TRL's {method.trl_trainer} rejected the settings: {error}") from None
    trainer.step_health, trainer.training_state = guards.health, guards.readings
    trainer.model_args = model_args  # for the effective config written with the final model
    trainer.stop_at_step_end = guards.stop
    guards.stop.accelerator = trainer.accelerator
    if hasattr(trainer, "ref_model") and trainer.is_world_process_zero():
        reference = "the policy with its adapter disabled" if trainer.ref_model is None else "a frozen copy"
        logger.info("%s reference model: %s", method.name.upper(), reference)
    return trainer, tokenizer


def train(config: JobConfig, method: Method) -> None:
    """Resume from the newest complete checkpoint, train, then save the final model atomically."""
    request = StopRequest()
    request.install()  # from here on, SIGTERM/SIGINT save and stop instead of killing the process
    guards = Guards.for_run(config, request)
    trainer, tokenizer = build_trainer(config, method, guards)
    if request.signal_name is not None:  # asked to stop while loading: nothing new to save
        raise TerminatedBySignal(f"{request.signal_name} before the first step; nothing was lost")
    quiet_library_output(trainer)
    resume = latest_complete_checkpoint(config.layout)
    if resume is not None:
        logger.info("resuming from %s", resume)
    if trainer.is_world_process_zero():
        logger.info("training %s on %d records", method.name, len(trainer.train_dataset))
    _run(trainer, guards, config.layout, resume)
    if trainer.is_world_process_zero():
        guards.memory.log_summary(config)
    health, stopped_at = guards.health, guards.stop.stopped_at
    if stopped_at is not None and health.diverged_at is None:
        newest = latest_complete_checkpoint(config.layout)
        after = f"{newest} is complete, and a restart resumes from it" if newest else "a restart starts over"
        raise TerminatedBySignal(f"{request.signal_name} at step {stopped_at}; {after}")
    if health.diverged_at is not None:
        raise TrainingDiverged(
            f"the loss or gradient norm was NaN or infinite for {health.streak} optimizer steps in a row, up to "
            f"step {health.diverged_at}; training stopped and nothing was published. The newest complete "
            f"checkpoint is {latest_complete_checkpoint(config.layout) or 'none'}. Lower TRAIN_LEARNING_RATE, keep "
            "TRAIN_MAX_GRAD_NORM above 0, prefer bf16 to fp16, and look for extreme records in the data"
        )
    if trainer.is_world_process_zero():
        monitor.set_phase("saving")
    save_final(trainer, config, tokenizer)


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


def save_final(trainer: Any, config: JobConfig, tokenizer: Any) -> None:
    """Write model/adapter, tokenizer, effective config, validation report and manifest; then publish."""
    layout = config.layout
    partial = layout.final_partial
    if trainer.is_world_process_zero():
        discard(partial)
    trainer.accelerator.wait_for_everyone()
    if not weights_are_finite(trainer.model):
        raise TrainingDiverged("the trained weights hold NaN or infinite values; final/ was not published")
    trainer.save_model(str(partial))  # every rank: DeepSpeed ZeRO-3 gathers the shards here
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(partial))
        _write_json(partial / "effective_config.json", _effective_config(trainer, config))
        _write_json(partial / "log_history.json", trainer.state.log_history)
        if layout.report.is_file():
            shutil.copy2(layout.report, partial / layout.report.name)
        _write_json(partial / "run_manifest.json", _manifest(trainer, config))
        publish_final(partial, layout.final)
        logger.info("final model saved: %s", layout.final)
    trainer.accelerator.wait_for_everyone()


def _effective_config(trainer: Any, config: JobConfig) -> dict[str, Any]:
    """What was set, and what TRL ran with after the job's defaults: every training and model field."""
    effective = config.effective()
    resolved = json.loads(trainer.args.to_json_string())
    for name, value in resolved.items():  # transformers hides every *_token field; only the secret ones stay hidden
        if value == f"<{name.upper()}>":
            resolved[name] = getattr(trainer.args, name)
    effective["training_resolved"] = redact(resolved)
    model_resolved = dataclasses.asdict(trainer.model_args)
    effective["model_resolved"] = redact(json.loads(json.dumps(model_resolved, default=str)))
    return effective


def _manifest(trainer: Any, config: JobConfig) -> dict[str, Any]:
    layout = config.layout
    data = {
        "train_source": config.job.data_path,
        "eval_source": config.job.eval_data_path,
        "train_prepared": str(layout.train_data),
        "eval_prepared": str(layout.eval_data) if layout.eval_data.is_file() else None,
    }
    extra = {
        "method": config.method,
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return build_manifest(config.run_id, data, extra)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
