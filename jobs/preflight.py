"""Preflight: everything that can be checked before a model loads or a GPU is touched.

The output volume first (writable, room for a checkpoint), then the model directory, then every data
record (jobs/data/): the validated records and the report land in the output directory's layout.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jobs.config import JobConfig
from jobs.data.lengths import percentiles, token_lengths
from jobs.data.readers import check_readable
from jobs.data.report import summary_lines
from jobs.data.validate import Policy, ValidationResult, validate_dataset
from jobs.errors import DataError, EnvironmentProblem
from jobs.methods import METHODS, methods_for_kind

logger = logging.getLogger(__name__)

WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
MIN_FREE_BYTES = 1 << 30  # below this no checkpoint of a real model fits


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
    )


def validate_data(config: JobConfig, count_tokens: bool) -> dict[str, Any]:
    """Validate and split the data, write the prepared records and the report; raise DataError on refusal."""
    job = config.job
    train_path = Path(str(job.data_path))
    eval_path = Path(job.eval_data_path) if job.eval_data_path else None
    try:
        check_readable(train_path, "TRAIN_DATA_PATH")
        if eval_path:
            check_readable(eval_path, "TRAIN_EVAL_DATA_PATH")
    except DataError as error:
        _write_report(config, {"result": "refused", "reason": str(error), "method": config.method, "files": []})
        raise
    result = validate_dataset(train_path, eval_path, _policy(config), config.layout.data_dir)
    lengths = _lengths(config, result, count_tokens)
    report = _report(config, result, lengths)
    _write_report(config, report)
    for line in summary_lines(result.files, result.split, lengths):
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
    """The output volume must exist (or be creatable), be writable, and have room for a checkpoint."""
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=output_dir, prefix=".write-test-"):
            pass
    except OSError as error:
        raise EnvironmentProblem(
            f"TRAIN_OUTPUT_DIR={output_dir} is not writable ({error.strerror}); mount a writable volume there"
        ) from None
    free = shutil.disk_usage(output_dir).free
    if free < MIN_FREE_BYTES:
        raise EnvironmentProblem(
            f"TRAIN_OUTPUT_DIR={output_dir} has {free / 2**20:.0f} MiB free; at least 1 GiB is needed for checkpoints"
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
    if not os.access(path / "config.json", os.R_OK):
        raise EnvironmentProblem(f"TRAIN_MODEL_NAME_OR_PATH={model_path}: config.json is not readable")


def run_preflight(config: JobConfig, *, for_training: bool) -> dict[str, Any]:
    """The model and data checks, in order of cost (after `check_output_dir`); returns the validation report."""
    if for_training:
        check_model_dir(config.model.get("model_name_or_path"))
    # Token counting needs the tokenizer (and torch): training has a model; validate only when one is named.
    return validate_data(config, count_tokens=bool(config.model.get("model_name_or_path")))
