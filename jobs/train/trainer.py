"""Building a training process's trainer: the method's TRL config and trainer, the validated data, the model
and tokenizer, and the callbacks that guard the run, in the order that fails cheapest first.

Everything it is built from comes from the resolved run (jobs/config/resolved.py): no setting, default or
process count is worked out here again. The one thing checked again is the device: torch in this process
must see what the parent's probe saw (exit 4 otherwise).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from transformers import TrainerCallback

from jobs.config.defaults import Device
from jobs.config.resolved import ResolvedRun
from jobs.errors import ConfigError, EnvironmentProblem, JobError
from jobs.layout import OutputLayout
from jobs.methods import METHODS
from jobs.methods.base import Method
from jobs.monitor import writer
from jobs.train import attention, batching
from jobs.train.guards.checkpoints import CheckpointMarker
from jobs.train.guards.divergence import CheckedSteps, DivergenceStop, ReadTrainingState, StepHealth, TrainingState
from jobs.train.guards.peak_memory import PeakWatch
from jobs.train.guards.progress import ProgressBar, StepLogger, wants_progress_bar
from jobs.train.guards.samples import SampleGenerations
from jobs.train.guards.stall import StallWatch
from jobs.train.guards.stopping import StopAtStepEnd, StopBudget, StoppableSteps, StopRequest
from jobs.train.model import build_model_config, load_model, load_tokenizer, peft_config

logger = logging.getLogger("jobs.train")


def check_device(expected: Device) -> None:
    """Refuse to train on another device than the one the run was resolved for (exit 4): a node whose
    driver NVML reads but whose torch build cannot use the GPU would otherwise train on the CPU, slowly
    and with other defaults, or fail later."""
    seen = Device.probe_torch()
    if seen != expected:
        raise EnvironmentProblem(
            f"the job was set up for {expected.description} (the entrypoint's NVML probe), but torch in this "
            f"training process sees {seen.description}: check that the image's torch has CUDA and that the "
            "node's driver supports it (nvidia-smi, python -c 'import torch; print(torch.cuda.is_available())')"
        )


def build_training_args(run: ResolvedRun, method: Method) -> Any:
    """The method's TRL config from the run's resolved settings.

    The Hub token goes to the environment instead (HF_TOKEN, where huggingface_hub looks): transformers
    pickles the whole config into training_args.bin in every checkpoint and in final/.
    """
    settings = {**run.training, "output_dir": str(run.config.output_dir)}
    # Preflight built the assistant masks into the prepared records (jobs/data/chat.py); TRL's own switch would
    # swap templates and tokenise again, and refuses templates it has no training version of.
    settings.pop("assistant_only_loss", None)
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
    def for_run(cls, run: ResolvedRun, request: StopRequest) -> Guards:
        return cls(StopAtStepEnd(request), StepHealth(limit=run.job.max_nonfinite_steps),
                   StopBudget(run.job.stop_grace_seconds), TrainingState(), PeakWatch())  # fmt: skip

    def interrupted(self) -> bool:
        """Whether training ended early: stopped on a signal, or diverged."""
        return self.stop.stopped_at is not None or self.health.diverged_at is not None

    def callbacks(self) -> list[TrainerCallback]:
        # The stop comes before DivergenceStop, so that divergence can cancel a stop's save of non-finite weights;
        # the marker (with its checksums) before the budget, whose save time must include it.
        marker = CheckpointMarker()
        return [self.stop, DivergenceStop(self.health), marker, self.budget, ReadTrainingState(self.readings)]


def callbacks(run: ResolvedRun, method: Method, guards: Guards) -> list[TrainerCallback]:
    # The stall watch after the budget (in guards.callbacks()), whose step and save times derive its timeout.
    stall = StallWatch(run.layout, run.job.stall_timeout, guards.budget)
    found: list[TrainerCallback] = [*guards.callbacks(), stall, StepLogger()]
    if wants_progress_bar(run.job.log_format):
        found.append(ProgressBar())
    if run.job.profile:
        from jobs.train.guards.profiling import StepProfiler

        found.append(StepProfiler(run.job.profile, run.layout.profile))
    if writer.enabled():  # in jobs whose entrypoint runs an exporter
        from jobs.train.guards.metrics_callback import MetricsCallback

        found.append(MetricsCallback(method, guards.memory))
    if run.job.samples > 0:
        found.append(SampleGenerations(run.layout, run.job.samples, run.job.sample_max_new_tokens, guards.interrupted))
    return found


def attach_samples(trainer: Any) -> None:
    """The samples' callback gets the trainer (its data, model and accelerator), and transformers'
    TensorBoardCallback moves to the end of the list: it closes its writer at train end, after which the
    final round of samples could not be written to it."""
    from transformers.integrations import TensorBoardCallback

    for callback in trainer.callback_handler.callbacks:
        if isinstance(callback, SampleGenerations):
            callback.attach(trainer)
    tensorboard = trainer.pop_callback(TensorBoardCallback)
    if tensorboard is not None:
        trainer.add_callback(tensorboard)


def start_deepspeed_early(run: ResolvedRun) -> None:
    """Under DeepSpeed on CPU, join the process group over gloo before any config or model exists. ZeRO-3 was
    seen to size its batch for one process when a model loads after the DeepSpeed config is built (a model
    given by path, a reference created later) and fail with "train_batch_size is not equal to
    micro_batch_per_gpu * ..."; the job's own load order does not hit it today, and starting early keeps
    it that way whatever loads when. On a GPU, transformers starts the group over NCCL itself."""
    if run.device.gpu or run.distributed_type != "DEEPSPEED":
        return
    import deepspeed

    deepspeed.init_distributed(dist_backend="gloo")


def guarded(trainer_class: type[Any]) -> type[Any]:
    """The method's trainer with the per-micro-batch hooks: stop between micro-batches, check each step."""
    return type(trainer_class.__name__, (StoppableSteps, CheckedSteps, trainer_class), {})


def build_trainer(run: ResolvedRun, guards: Guards) -> tuple[Any, Any]:
    """The method's TRL trainer and tokenizer, in the order that fails cheapest first."""
    method = METHODS[run.method]
    check_device(run.device)
    start_deepspeed_early(run)
    model_args = build_model_config(run.model)
    train_dataset, eval_dataset = load_prepared_data(run.layout)
    args = build_training_args(run, method)
    train_dataset = method.prepare_dataset(train_dataset, args.seed)
    if eval_dataset is not None:
        eval_dataset = method.prepare_dataset(eval_dataset, args.seed)
    if "tensorboard" in args.report_to:  # read by transformers' TensorBoardCallback when it is created
        os.environ.setdefault("TENSORBOARD_LOGGING_DIR", str(run.layout.tensorboard))
    tokenizer = load_tokenizer(model_args)
    if batching.choose(method, run.config.training, model_args, args):
        logger.info("padding-free batches: each step's records end to end, no padding (see jobs/train/batching.py)")
    if attention.choose(model_args, args):
        logger.info("padding-free batches: attention per packed sequence (%s, see jobs/train/attention.py)",
                    attention.NAME)  # fmt: skip
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
            callbacks=callbacks(run, method, guards),
        )
    except ValueError as error:  # TRL checks combinations of settings when the trainer is built
        raise ConfigError(f"TRL's {method.trl_trainer} rejected the settings: {error}") from None
    trainer.step_health, trainer.training_state = guards.health, guards.readings
    trainer.model_args = model_args  # for the effective config written with the final model
    trainer.stop_at_step_end = guards.stop
    attach_samples(trainer)
    guards.stop.accelerator = trainer.accelerator
    if hasattr(trainer, "ref_model") and trainer.is_world_process_zero():
        reference = "the policy with its adapter disabled" if trainer.ref_model is None else "a frozen copy"
        logger.info("%s reference model: %s", method.name.upper(), reference)
    return trainer, tokenizer
