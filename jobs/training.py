"""What SFT and DPO share around TRL's trainers: arguments, callbacks, data, the run, the final save.

Imported only by the training processes (it pulls in torch and transformers).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import transformers
from transformers import TrainerCallback
from transformers.trainer_callback import PrinterCallback, ProgressCallback

from jobs.checkpoints import CheckpointMarker, discard, latest_complete_checkpoint, publish_final
from jobs.config import SAFE_TRAINING_DEFAULTS, JobConfig, load_config
from jobs.errors import EXIT_CRASH, EXIT_OUT_OF_MEMORY, ConfigError, JobError
from jobs.logs import setup_logging
from jobs.manifest import build_manifest
from jobs.model import bf16_supported, build_model_config, load_model, load_tokenizer, peft_config
from jobs.monitor import lifecycle as monitor
from jobs.preflight import REPORT_NAME, prepared_paths

logger = logging.getLogger("jobs.train")

# Progress bars are for terminals; pod logs get one line per logging step from StepLogger instead.
transformers.utils.logging.disable_progress_bar()


def device_defaults() -> dict[str, Any]:
    """bf16 where the GPU has it (fp16 mixed precision on older GPUs), fp32 on CPU; checkpointing on GPU only."""
    import torch

    on_gpu = torch.cuda.is_available()
    return {
        "use_cpu": not on_gpu,
        "bf16": bf16_supported(),
        "fp16": on_gpu and not bf16_supported(),
        # Gradient (activation) checkpointing trades ~20% compute for memory on a GPU; on CPU it made steps
        # ~20x slower. transformers 5 renamed it; TRL's default still sets the old name.
        "activation_checkpointing": on_gpu,
    }


def build_training_args(config: JobConfig, config_class: type[Any], has_eval: bool) -> Any:
    """TRL's SFTConfig/DPOConfig: safe defaults, then device defaults, then whatever the user set."""
    eval_defaults = {"eval_strategy": "steps", "eval_steps": SAFE_TRAINING_DEFAULTS["save_steps"]} if has_eval else {}
    settings = {
        **SAFE_TRAINING_DEFAULTS,
        **device_defaults(),
        **eval_defaults,
        **config.training,
        "output_dir": str(config.output_dir),
    }
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):  # fmt: skip
        if old in config.training and new not in config.training:
            settings[new] = config.training[old]
    try:
        return config_class(**settings)
    except (ValueError, TypeError) as error:
        raise ConfigError(f"TRL rejected the training settings: {error}") from None


def load_prepared_data(config: JobConfig) -> tuple[Any, Any]:
    """The records preflight validated and split, as datasets (never a second parse of the user's file)."""
    import datasets
    from datasets import Dataset

    datasets.disable_progress_bars()

    train_file, eval_file = prepared_paths(config.output_dir)
    if not train_file.is_file():
        raise JobError(f"{train_file} is missing: run the job through entrypoint.py, which validates the data first")
    cache = str(config.output_dir / "data" / "cache")
    train = Dataset.from_json(str(train_file), cache_dir=cache)
    evaluation = Dataset.from_json(str(eval_file), cache_dir=cache) if eval_file.is_file() else None
    return train, evaluation


@dataclass
class TrainingSetup:
    """Everything a method file hands its TRL trainer."""

    args: Any
    model: Any
    tokenizer: Any
    peft_config: Any
    train_dataset: Any
    eval_dataset: Any
    callbacks: list[TrainerCallback]


def prepare_training(config: JobConfig, config_class: type[Any]) -> TrainingSetup:
    """Settings, data, tokenizer and model, in the order that fails cheapest first."""
    model_args = build_model_config(config.model)
    train_dataset, eval_dataset = load_prepared_data(config)
    args = build_training_args(config, config_class, has_eval=eval_dataset is not None)
    tokenizer = load_tokenizer(model_args)
    model = load_model(model_args, trust_remote_code=args.trust_remote_code)
    return TrainingSetup(
        args=args,
        model=model,
        tokenizer=tokenizer,
        peft_config=peft_config(model_args),
        train_dataset=train_dataset,
        eval_dataset=eval_dataset,
        callbacks=[StepLogger(), CheckpointMarker(), *monitoring_callbacks()],
    )


def monitoring_callbacks() -> list[TrainerCallback]:
    """The metrics callback, in jobs whose entrypoint runs an exporter."""
    if not monitor.enabled():
        return []
    from jobs.monitor.callback import MetricsCallback

    return [MetricsCallback()]


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
            logger.info(
                message,
                state.global_step,
                state.max_steps,
                logs["loss"],
                logs.get("learning_rate", math.nan),
                throughput,
                extra=fields,
            )
        elif "eval_loss" in logs:
            logger.info("step %d eval_loss=%.4f", state.global_step, logs["eval_loss"], extra=fields)
        elif "train_runtime" in logs:
            logger.info("training finished in %.1f s", logs["train_runtime"], extra=fields)

    def _add_throughput(self, fields: dict[str, Any], logs: dict[str, float]) -> None:
        now, tokens = time.monotonic(), logs.get("num_tokens")
        if tokens is not None and self._last_tokens is not None and now > self._last_time:
            fields["tokens_per_second"] = (tokens - self._last_tokens) / (now - self._last_time)
        self._last_time, self._last_tokens = now, tokens


def quiet_library_output(trainer: Any) -> None:
    """Route transformers' logging through ours and drop its print()-based progress callbacks."""
    transformers.utils.logging.disable_default_handler()
    transformers.utils.logging.enable_propagation()
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


def train_and_save(trainer: Any, config: JobConfig, tokenizer: Any) -> None:
    """Resume from the newest complete checkpoint, train, then save the final model atomically."""
    quiet_library_output(trainer)
    resume = latest_complete_checkpoint(config.output_dir)
    if resume is not None:
        logger.info("resuming from %s", resume)
    if trainer.is_world_process_zero():
        logger.info("training %s on %d records", config.method, len(trainer.train_dataset))
    trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    if trainer.is_world_process_zero():
        monitor.set_phase("saving")
    save_final(trainer, config, tokenizer)


def save_final(trainer: Any, config: JobConfig, tokenizer: Any) -> None:
    """Write model/adapter, tokenizer, effective config, validation report and manifest; then publish."""
    final = config.output_dir / "final"
    partial = config.output_dir / "final.partial"
    if trainer.is_world_process_zero():
        discard(partial)
    trainer.accelerator.wait_for_everyone()
    trainer.save_model(str(partial))  # every rank: DeepSpeed ZeRO-3 gathers the shards here
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(partial))
        _write_json(partial / "effective_config.json", _effective_config(trainer, config))
        _write_json(partial / "log_history.json", trainer.state.log_history)
        report = config.output_dir / REPORT_NAME
        if report.is_file():
            shutil.copy2(report, partial / REPORT_NAME)
        _write_json(partial / "run_manifest.json", _manifest(trainer, config))
        publish_final(partial, final)
        logger.info("final model saved: %s", final)
    trainer.accelerator.wait_for_everyone()


def _effective_config(trainer: Any, config: JobConfig) -> dict[str, Any]:
    from jobs.config import redact

    effective = config.effective()
    effective["training_resolved"] = redact(json.loads(trainer.args.to_json_string()))
    return effective


def _manifest(trainer: Any, config: JobConfig) -> dict[str, Any]:
    train_file, eval_file = prepared_paths(config.output_dir)
    data = {
        "train_source": config.job.data_path,
        "eval_source": config.job.eval_data_path,
        "train_prepared": str(train_file),
        "eval_prepared": str(eval_file) if eval_file.is_file() else None,
    }
    extra = {
        "method": config.method,
        "world_size": trainer.accelerator.num_processes,
        "global_step": trainer.state.global_step,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return build_manifest(data, extra)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")


def run_worker(train: Callable[[JobConfig], None], config: JobConfig | None = None) -> int:
    """Train and map the outcome to an exit code; reads the config from the environment when not given."""
    try:
        train(config or load_config(os.environ))
    except JobError as error:
        logger.error("%s: %s", error.kind, error.report())
        return error.exit_code
    except Exception as error:
        if _is_out_of_memory(error):
            logger.error("out of device memory: %s; lower the batch size, enable TRAIN_LOAD_IN_4BIT or ZeRO-3", error)
            return EXIT_OUT_OF_MEMORY
        logger.exception("unexpected crash")
        return EXIT_CRASH
    return 0


def _is_out_of_memory(error: BaseException) -> bool:
    import torch

    return isinstance(error, torch.OutOfMemoryError) or "CUDA out of memory" in str(error)


def worker_main(train: Callable[[JobConfig], None]) -> None:
    """Entry for `accelerate launch -m jobs.<method>` ranks: each reads the same TRAIN_* environment."""
    from jobs.launch import record_rank_outcome

    setup_logging()
    code = run_worker(train)
    # On a config error (already logged) there is no output dir: the launcher then reports its own code.
    with contextlib.suppress(JobError, OSError):
        record_rank_outcome(load_config(os.environ).output_dir, code)
    sys.exit(code)
