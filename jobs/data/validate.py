"""The validation pipeline: every file validated (in parallel shards when large), split, and committed.

Policy: any invalid record refuses the data (exit 3), unless TRAIN_DROP_INVALID drops them, each one
listed, up to TRAIN_MAX_INVALID_FRACTION. Evaluation records equal to a training record (exactly or
after normalising case and whitespace) are leakage, treated the same way.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.data.file_validator import FileValidator, Policy, TrainIndex
from jobs.data.prepared import PreparedWriter
from jobs.data.report import FileReport
from jobs.data.shards import can_shard, validate_in_shards
from jobs.errors import DataError


def refusal(report: FileReport, policy: Policy) -> str | None:
    """Why this file's data must be refused under the policy, or None."""
    if report.fatal or report.wrong_kind:  # one line for a file of the wrong kind, with its true size
        return report.fatal or f"{report.path}: {report.records} records of {report.wrong_kind}"
    if report.records == 0:
        return f"{report.path}: holds no records; it is empty or has blank lines only"
    if report.invalid_records and not policy.drop_invalid:
        return (
            f"{report.path}: {report.invalid_records} of {report.records} records are invalid; fix them, or set "
            "TRAIN_DROP_INVALID=true to drop them (each is listed in the report)"
        )
    fraction = report.invalid_records / report.records
    if fraction > policy.max_invalid_fraction:
        return (
            f"{report.path}: {fraction:.2%} of the records are invalid, above TRAIN_MAX_INVALID_FRACTION="
            f"{policy.max_invalid_fraction}; fix the data"
        )
    if report.valid == 0:
        return f"{report.path}: no valid records remain"
    return None


@dataclass
class ValidationResult:
    files: list[FileReport]
    split: dict[str, Any]
    char_lengths: array[int]
    refused: str | None = None
    problems: list[str] = field(default_factory=list)


def validate_dataset(train: Path, evaluation: Path | None, policy: Policy, prepared_dir: Path) -> ValidationResult:
    """Validate the training file (and the eval file), writing the prepared split; never raises for bad data."""
    writer, index = PreparedWriter(prepared_dir), TrainIndex()
    result = ValidationResult(files=[], split={}, char_lengths=array("I"))
    try:
        for path, role in ((train, "train"), (evaluation, "eval")):
            if path is None:
                continue
            has_eval = evaluation is not None or policy.eval_split > 0
            validator = FileValidator(path, role, policy, writer, index, has_eval=has_eval)
            try:
                if not (can_shard(path) and validate_in_shards(validator)):
                    validator = FileValidator(path, role, policy, writer, index, has_eval=has_eval)
                    validator.run()
                report = validator.report
            finally:
                result.files.append(validator.report)
                result.char_lengths.extend(validator.lengths)
            reason = refusal(report, policy)
            if reason:
                raise DataError(reason, report.error_lines())
        _check_split(writer, policy)
    except DataError as error:
        writer.discard()
        result.refused, result.problems = str(error), error.problems
    else:
        writer.commit()
    result.split = {
        **writer.counts,
        "eval_source": "file" if evaluation else ("split" if policy.eval_split > 0 else "none"),
        "fraction": policy.eval_split,
        "seed": policy.seed,
        "method": "seeded hash of the normalised record: equal records share a side",
    }
    return result


def _check_split(writer: PreparedWriter, policy: Policy) -> None:
    if writer.counts["train"] == 0:
        raise DataError(f"TRAIN_EVAL_SPLIT={policy.eval_split} left no training records; lower it")
    if policy.eval_split > 0 and writer.counts["eval"] == 0:
        raise DataError(
            f"TRAIN_EVAL_SPLIT={policy.eval_split} left no evaluation records "
            f"({writer.counts['train']} records in all); raise it or give TRAIN_EVAL_DATA_PATH"
        )
