"""The validation pipeline: every file validated (in parallel shards when large), split, and committed.

Policy: any invalid record refuses the data (exit 3), unless TRAIN_DROP_INVALID drops them, each one
listed, up to TRAIN_MAX_INVALID_FRACTION. Evaluation records equal to a training record (exactly or
after normalising case and whitespace) are leakage, treated the same way.
"""

from __future__ import annotations

from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.data.file_validator import FileValidator, Policy, SplitState
from jobs.data.keys import KeyIndex, KeyTable, LeakIndex
from jobs.data.prepared import PreparedWriter
from jobs.data.report import FileReport
from jobs.data.shards import can_shard, validate_in_shards
from jobs.data.sources import FileDigest
from jobs.errors import DataError


def file_refusal(report: FileReport) -> str | None:
    """Why one file refuses the data whatever the policy: unreadable, of the wrong kind, or empty."""
    if report.fatal or report.wrong_kind:  # one line for a file of the wrong kind, with its true size
        return report.fatal or f"{report.path}: {report.records} records of {report.wrong_kind}"
    if report.records == 0:
        return f"{report.path}: holds no records; it is empty or has blank lines only"
    return None


def refusal(report: FileReport, policy: Policy) -> str | None:
    """Why this data (a file, or a split's files together) must be refused under the policy, or None."""
    if report.invalid_records and not policy.drop_invalid:
        return (
            f"{report.path}: {report.invalid_records} of {report.records} records are invalid; fix them, or set "
            "TRAIN_DROP_INVALID=true to drop them (each is listed in the report)"
        )
    fraction = report.invalid_records / max(1, report.records)
    if fraction > policy.max_invalid_fraction:
        return (
            f"{report.path}: {fraction:.2%} of the records are invalid, above TRAIN_MAX_INVALID_FRACTION="
            f"{policy.max_invalid_fraction}; fix the data"
        )
    if report.valid == 0:
        return f"{report.path}: no valid records remain"
    return None


def _together(reports: list[FileReport]) -> FileReport:
    """A split's files as one, for the policy's counts."""
    if len(reports) == 1:
        return reports[0]
    total = FileReport(path=f"{reports[0].path} and {len(reports) - 1} more file(s) of the {reports[0].role} split",
                       role=reports[0].role)  # fmt: skip
    total.records, total.valid = sum(r.records for r in reports), sum(r.valid for r in reports)
    total.invalid_records = sum(r.invalid_records for r in reports)
    return total


@dataclass
class ValidationResult:
    files: list[FileReport]
    split: dict[str, Any]
    char_lengths: array[int]
    refused: str | None = None
    problems: list[str] = field(default_factory=list)
    table_bytes: dict[str, int] = field(default_factory=dict)  # what the key tables hold, for the benchmark


def validate_dataset(
    train: Path | Sequence[Path], evaluation: Path | Sequence[Path] | None, policy: Policy, prepared_dir: Path
) -> ValidationResult:
    """Validate the training files (and the eval files), writing the prepared split; never raises for bad
    data. The files of one split are its shards: one format, duplicates found across them."""
    splits = {"train": _paths(train), "eval": _paths(evaluation)}
    writer = PreparedWriter(prepared_dir)
    result = ValidationResult(files=[], split={}, char_lengths=array("I"))
    leak: LeakIndex | None = None
    try:
        for role, paths in splits.items():
            if paths:
                split = SplitState(keeps_normalized=role == "train" and bool(splits["eval"]))
                state = _validate_split(role, paths, (policy, writer, leak), split, result)
                if role == "train" and splits["eval"]:
                    leak = LeakIndex(KeyIndex(state.seen), KeyIndex(state.normalized), state.files)
        check_split(writer, policy)
    except DataError as error:
        writer.discard()
        result.refused, result.problems = str(error), error.problems
    else:
        writer.commit()
    result.split = split_summary(writer, policy, bool(splits["eval"]))
    return result


def _paths(value: Path | Sequence[Path] | None) -> list[Path]:
    if value is None:
        return []
    return [value] if isinstance(value, Path) else list(value)


def _validate_split(
    role: str,
    paths: list[Path],
    context: tuple[Policy, PreparedWriter, LeakIndex | None],
    split: SplitState,
    result: ValidationResult,
) -> SplitState:
    """Validate one split's files in order, sharing its format and key tables; raise DataError to refuse."""
    reports = validate_files(role, paths, context, split, result)
    count_repeats(split, reports, result)
    refuse_invalid(reports, context[0])
    return split


def validate_files(
    role: str,
    paths: Sequence[Path],
    context: tuple[Policy, PreparedWriter, LeakIndex | None],
    split: SplitState,
    result: ValidationResult,
) -> list[FileReport]:
    """Validate files in order into the split's format and key tables, each in parallel shards when large;
    their reports (also added to `result`). DataError for a file that refuses the data whatever the policy."""
    policy, writer, leak = context
    reports: list[FileReport] = []
    for path in paths:
        digest = FileDigest(path)
        validator = FileValidator(path, role, policy, writer, leak, split=split)
        try:
            if not (can_shard(path) and validate_in_shards(validator)):
                validator = FileValidator(path, role, policy, writer, leak, split=split)
                validator.run()
        finally:
            validator.report.sha256 = digest.hexdigest()
            result.files.append(validator.report)
            result.char_lengths.extend(validator.lengths)
            reports.append(validator.report)
        reason = file_refusal(validator.report)
        if reason:
            raise DataError(reason, validator.report.error_lines())
    return reports


def count_repeats(split: SplitState, reports: list[FileReport], result: ValidationResult) -> None:
    """The split's duplicates and duplicate prompts, into its files' reports (`reports`: every file of the
    split, in its file numbers' order), and what its key tables hold."""
    for name, table in zip(("exact_keys", "prompt_keys", "normalized_keys"), split.tables(), strict=True):
        result.table_bytes[name] = result.table_bytes.get(name, 0) + table.nbytes
    result.table_bytes["lengths"] = result.char_lengths.itemsize * len(result.char_lengths)
    _report_repeats(split.seen, reports, "duplicates", split.files)
    _report_repeats(split.prompts, reports, "duplicate_prompts", split.files)


def refuse_invalid(reports: list[FileReport], policy: Policy) -> None:
    """DataError when these files' invalid records, together, refuse the data under the policy."""
    reason = refusal(_together(reports), policy)
    if reason:
        shown = [line for report in reports for line in report.error_lines()][: policy.max_shown]
        raise DataError(reason, shown)


def _report_repeats(table: KeyTable, reports: list[FileReport], name: str, files: list[str]) -> None:
    """Each file's count of records repeating an earlier one, and the split's first examples."""
    counts, examples = table.repeats()
    for number, count in counts.items():
        getattr(reports[number], name)["count"] += count
    for position, first in examples:
        number, first_number = table.file_at(position), table.file_at(first)
        example: dict[str, Any] = {"line": table.lines[position], "first_line": table.lines[first]}
        if first_number != number:
            example["first_file"] = files[first_number]
        getattr(reports[number], name)["examples"].append(example)


def check_split(writer: PreparedWriter, policy: Policy, setting: str = "TRAIN_EVAL_SPLIT") -> None:
    """Refuse a split that left one side empty; `setting`: what set the fraction, for the message."""
    if writer.counts["train"] == 0:
        raise DataError(f"{setting}={policy.eval_split} left no training records; lower it")
    if policy.eval_split > 0 and writer.counts["eval"] == 0:
        raise DataError(
            f"{setting}={policy.eval_split} left no evaluation records "
            f"({writer.counts['train']} records in all); raise it or give TRAIN_EVAL_DATA_PATH"
        )


def split_summary(writer: PreparedWriter, policy: Policy, eval_files: bool) -> dict[str, Any]:
    """The report's `split`: the prepared counts and how the evaluation side was found."""
    return {
        **writer.counts,
        "eval_source": "file" if eval_files else ("split" if policy.eval_split > 0 else "none"),
        "fraction": policy.eval_split,
        "seed": policy.seed,
        "method": "seeded hash of the normalised prompt: records sharing a prompt share a side",
    }
