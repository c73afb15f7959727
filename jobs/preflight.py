"""Preflight: everything that can be checked before a model loads or a GPU is touched.

The output volume first (writable, room for a checkpoint), then the model directory, then every data
record (jobs/data/): the validated records and the report land in the output directory's layout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import stat
import tempfile
from pathlib import Path
from typing import Any

from jobs.config import JobConfig
from jobs.data.lengths import percentiles, token_lengths
from jobs.data.report import summary_lines
from jobs.data.sources import resolve_data_files
from jobs.data.validate import Policy, ValidationResult, validate_dataset
from jobs.defaults import Device, model_settings
from jobs.errors import DataError, EnvironmentProblem
from jobs.estimate import checkpoint_bytes, human_size, read_tensors
from jobs.memory import check_memory
from jobs.methods import METHODS, methods_for_kind
from jobs.resume import check_resume

logger = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")
CHECKPOINTS_OF_ROOM = 2  # a new checkpoint is written before the oldest is rotated away


def data_policy(method: str, **settings: Any) -> Policy:
    """How the data of `method` is judged: the dataset kinds it trains on, plus the given settings."""
    kinds = METHODS[method].dataset_kinds
    other_kinds = {kind for other in METHODS.values() for kind in other.dataset_kinds} - set(kinds)
    hints = {kind: tuple(methods_for_kind(kind)) for kind in other_kinds}
    return Policy(method=method, dataset_kinds=kinds, methods_by_kind=hints, **settings)


def _policy(config: JobConfig) -> Policy:
    job = config.job
    return data_policy(
        config.method,
        data_format=job.data_format,
        drop_invalid=job.drop_invalid,
        max_invalid_fraction=job.max_invalid_fraction,
        max_shown=job.max_errors_shown,
        eval_split=job.eval_split,
        seed=int(config.training.get("seed", 42)),
        text_errors=frozenset(job.text_errors),
    )


def validate_data(config: JobConfig, count_tokens: bool) -> dict[str, Any]:
    """Validate and split the data, write the prepared records and the report; raise DataError on refusal."""
    job = config.job
    try:
        files = resolve_data_files(str(job.data_path), job.eval_data_path)
    except DataError as error:
        _write_report(config, {"result": "refused", "reason": str(error), "method": config.method, "files": []})
        raise
    main = config.topology.is_main_machine
    with tempfile.TemporaryDirectory(prefix="trainjob-validation-") as private:
        # The output volume is shared by every machine of a multi-node run: machine 0 writes the prepared
        # records and the report; the others validate the same data into a directory of their own.
        result = validate_dataset(
            files.train, files.eval, _policy(config), config.layout.data_dir if main else Path(private)
        )
    lengths = _lengths(config, result, count_tokens and main)
    report = {**_report(config, result, lengths), "layout": files.layout}
    if main:
        _write_report(config, report)
    for line in summary_lines(result.files, result.split, lengths, with_errors=result.refused is None):
        logger.info("%s", line)
    if result.refused:
        raise DataError(result.refused, result.problems)
    return report


def _write_report(config: JobConfig, report: dict[str, Any]) -> None:
    path = config.layout.report
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _lengths(config: JobConfig, result: ValidationResult, count_tokens: bool) -> dict[str, Any] | None:
    model_path = config.model.get("model_name_or_path")
    train_file = config.layout.train_data
    if count_tokens and model_path and not result.refused and train_file.is_file():
        max_length = config.training.get("max_length", 1024)
        try:
            return token_lengths(train_file, str(model_path), max_length)
        except (OSError, ValueError) as error:
            logger.warning("token lengths not counted: the tokenizer in %s does not load (%s)", model_path, error)
    return percentiles(result.char_lengths, "characters")


def _report(config: JobConfig, result: ValidationResult, lengths: dict[str, Any] | None) -> dict[str, Any]:
    by_format: dict[str, int] = {}
    for file in result.files:
        by_format[file.format or "unknown"] = by_format.get(file.format or "unknown", 0) + file.records
    return {
        "result": "refused" if result.refused else "ok",
        "reason": result.refused,
        "method": config.method,
        "counts_by_format": by_format,
        "split": result.split,
        "lengths": lengths,
        "files": [file.as_dict() for file in result.files],
    }


def check_output_dir(output_dir: Path) -> None:
    """The output volume must exist (or be creatable) and be writable (probed with a file)."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise EnvironmentProblem(
            f"TRAIN_OUTPUT_DIR={output_dir} is not writable ({error.strerror}); mount a writable volume there"
        ) from None


def check_disk_room(config: JobConfig) -> None:
    """Room for two checkpoints of this model, sized from its safetensors headers before it loads."""
    model = config.model
    tensors = read_tensors(Path(str(model["model_name_or_path"])))
    if not tensors:
        logger.warning("checkpoint size not checked against the free disk: the weights are not safetensors")
        return
    lora_rank = int(model.get("lora_r", 16)) if model.get("use_peft") else None
    dtype = model_settings(Device.probe_cheaply(), model)["dtype"]
    needed = CHECKPOINTS_OF_ROOM * checkpoint_bytes(tensors, lora_rank=lora_rank, train_dtype=dtype)
    free = shutil.disk_usage(config.output_dir).free
    if free < needed:
        what = f"LoRA r={lora_rank} adapter" if lora_rank else f"full {dtype} fine-tune"
        raise EnvironmentProblem(
            f"TRAIN_OUTPUT_DIR={config.output_dir} has {human_size(free)} free, but a checkpoint of this {what} "
            f"(weights and AdamW states) takes about {human_size(needed / CHECKPOINTS_OF_ROOM)} and the job needs room "
            f"for {CHECKPOINTS_OF_ROOM}: {human_size(needed)}. Mount a larger volume, free space, or train LoRA "
            "(TRAIN_USE_PEFT=true)"
        )


def _check_model_files_readable(path: Path, model_path: str) -> None:
    """Every file of the model must be readable by this process: a directory written by another user (an
    initializer running as root, safetensors' 0600 weights) fails here, not halfway through loading."""
    unreadable = [p for p in sorted(path.iterdir()) if p.is_file() and not os.access(p, os.R_OK)]
    if unreadable:
        first = unreadable[0].stat()
        raise EnvironmentProblem(
            f"TRAIN_MODEL_NAME_OR_PATH={model_path}: {len(unreadable)} file(s) this process (uid {os.getuid()}) "
            f"cannot read, e.g. {unreadable[0].name} (owner uid {first.st_uid}, {stat.filemode(first.st_mode)}); "
            "make them readable: chmod -R a+rX on the volume, or g+rX with the pod's fsGroup"
        )


def check_model_dir(model_path: str | None) -> None:
    """The base model must be a local directory with a config and weights: nothing is downloaded at run time."""
    if not model_path:
        raise EnvironmentProblem("TRAIN_MODEL_NAME_OR_PATH is not set; point it at a mounted model directory")
    path = Path(model_path)
    if not path.is_dir():
        raise EnvironmentProblem(
            f"TRAIN_MODEL_NAME_OR_PATH={model_path} is not a directory; mount the model there "
            "(runs are offline: nothing is downloaded)"
        )
    if not (path / "config.json").is_file():
        raise EnvironmentProblem(f"TRAIN_MODEL_NAME_OR_PATH={model_path} has no config.json; is it a model directory?")
    if not any((path / name).is_file() for name in WEIGHT_FILES):
        raise EnvironmentProblem(f"TRAIN_MODEL_NAME_OR_PATH={model_path} holds no weights ({', '.join(WEIGHT_FILES)})")
    _check_model_files_readable(path, model_path)
    if not any((path / name).is_file() for name in TOKENIZER_FILES):
        raise EnvironmentProblem(
            f"TRAIN_MODEL_NAME_OR_PATH={model_path} has no tokenizer ({', '.join(TOKENIZER_FILES)}); copy the base "
            "model's tokenizer files into it"
        )


def run_preflight(config: JobConfig, *, for_training: bool) -> dict[str, Any]:
    """The model and data checks, in order of cost (after `check_output_dir`); returns the validation report."""
    main = config.topology.is_main_machine  # machine 0 alone changes the shared output volume
    if for_training:
        check_model_dir(config.model.get("model_name_or_path"))
        check_memory(config)
        check_disk_room(config)
        if main:
            config.layout.set_aside_incomplete()
    # Token counting needs the tokenizer (and torch): training has a model; validate only when one is named.
    report = validate_data(config, count_tokens=bool(config.model.get("model_name_or_path")))
    if for_training and main:
        check_resume(config)  # needs the prepared data's hash
    return report
