"""Preflight: everything that can be checked before a model loads or a GPU is touched (DESIGN "The flow" 2)."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from jobs.config import JobConfig
from jobs.data import DataReport, check_readable, prepared_paths, read_file, refuse_invalid, split_records, write_jsonl
from jobs.errors import DataError, EnvironmentProblem
from jobs.launch import resolve_accelerate_config

logger = logging.getLogger(__name__)

REPORT_NAME = "validation_report.json"
WEIGHT_FILES = (
    "model.safetensors",
    "model.safetensors.index.json",
    "pytorch_model.bin",
    "pytorch_model.bin.index.json",
)
MIN_FREE_BYTES = 1 << 30  # below this no checkpoint of a real model fits


def validate_data(config: JobConfig) -> dict[str, Any]:
    """Read, check and split the data; write the prepared records and the report; raise on bad data."""
    job = config.job
    seed = int(config.training.get("seed", 42))
    train_path = Path(str(job.data_path))
    check_readable(train_path, "TRAIN_DATA_PATH")
    eval_path = Path(job.eval_data_path) if job.eval_data_path else None
    if eval_path:
        check_readable(eval_path, "TRAIN_EVAL_DATA_PATH")
    reports: list[DataReport] = []
    try:
        train, train_report = read_file(train_path, config.method)
        reports.append(train_report)
        refuse_invalid(train_report)
        held_out: list[dict[str, Any]] = []
        if eval_path:
            held_out, eval_report = read_file(eval_path, config.method)
            reports.append(eval_report)
            refuse_invalid(eval_report)
        elif job.eval_split > 0:
            train, held_out = split_records(train, job.eval_split, seed)
    except DataError as error:
        _write_report(config, reports, {"error": error.report()})
        raise
    train_file, eval_file = prepared_paths(config.output_dir)
    write_jsonl(train, train_file)
    if held_out:
        write_jsonl(held_out, eval_file)
    else:
        eval_file.unlink(missing_ok=True)
    summary = {"train_records": len(train), "eval_records": len(held_out), "format": reports[0].format}
    _write_report(config, reports, summary)
    logger.info("data ok: %d training and %d evaluation records (%s)", len(train), len(held_out), summary["format"])
    return summary


def _write_report(config: JobConfig, reports: list[DataReport], summary: dict[str, Any]) -> None:
    report = {"method": config.method, **summary, "files": [dataclasses.asdict(r) for r in reports]}
    path = config.output_dir / REPORT_NAME
    path.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


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
    """All checks in order of cost; returns the data summary."""
    if config.job.accelerate_config:
        resolve_accelerate_config(config.job.accelerate_config)
    check_output_dir(config.output_dir)
    if for_training:
        check_model_dir(config.model.get("model_name_or_path"))
    return validate_data(config)
