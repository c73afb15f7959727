"""A dataset mixture (TRAIN_DATA_MIX, jobs/data/mixture.py) validated and mixed as TRL's `get_dataset` mixes it.

Each source is validated in list order into a staging writer of its own, under its entry's `format` and
`columns`, with the key tables of the whole mixture shared (duplicates and leakage are found across
sources). A mixture trains one prepared format: a source whose records end up in another format than the
first source's is refused (exit 3), naming both. Then each source gives its first `shares(...)` valid
records, in file order, and the mixture is their concatenation in list order: TRL's selection, counted
over the valid records. The evaluation side (`test_split_size`, else TRAIN_EVAL_SPLIT) is the by-prompt
seeded split every record was already given when it was validated; a record's side depends on its own
prompt only, so taking the first records of each source and splitting afterwards give the same sides.
"""

from __future__ import annotations

import dataclasses
import shutil
from array import array
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from jobs.data.file_validator import Policy, SplitState
from jobs.data.keys import KeyIndex, LeakIndex
from jobs.data.mixture import MixSource, Mixture, shares
from jobs.data.prepared import PreparedWriter
from jobs.data.report import FileReport
from jobs.data.validate import (
    ValidationResult,
    check_split,
    count_repeats,
    refuse_invalid,
    split_summary,
    validate_files,
)
from jobs.errors import DataError

SELECTION = "first"
SELECTION_NOTE = (
    "the first round(share * N) valid records of each source, in file order, as TRL's fraction takes them "
    "(N: the largest mixture that repeats no record); no random draw"
)


@dataclasses.dataclass
class _Part:
    """One source as validated: its staging writer and its files' reports."""

    source: MixSource
    writer: PreparedWriter
    reports: list[FileReport]
    shape: str = ""  # the prepared format, with the adapter that made it
    selected: int = 0
    selected_eval: int = 0


def validate_mixture(
    mixture: Mixture, sources: Sequence[MixSource], evaluation: Sequence[Path], policy: Policy, prepared_dir: Path
) -> tuple[ValidationResult, dict[str, Any]]:
    """Validate every source, take TRL's shares and write the mixed prepared files; never raises for bad data
    (ValidationResult.refused). Also the report's `mixture`: each source's counts and what it gave."""
    writer = PreparedWriter(prepared_dir)
    result = ValidationResult(files=[], split={}, char_lengths=array("I"))
    staging = prepared_dir / "mix"
    parts: list[_Part] = []
    setting = "test_split_size" if mixture.test_split_size is not None else "TRAIN_EVAL_SPLIT"
    try:
        split = SplitState(keeps_normalized=bool(evaluation))
        for source in sources:
            parts.append(_validate_source(source, policy, staging, split, result))
            _check_together(parts)
        count_repeats(split, _by_file_number(split, parts), result)
        _mix(parts, writer)
        if evaluation:
            leak = LeakIndex(KeyIndex(split.seen), KeyIndex(split.normalized), split.files)
            eval_split = SplitState()
            reports = validate_files("eval", evaluation, (policy, writer, leak), eval_split, result)
            count_repeats(eval_split, reports, result)
            refuse_invalid(reports, policy)
        check_split(writer, policy, setting)
    except DataError as error:
        writer.discard()
        result.refused, result.problems = str(error), error.problems
    else:
        writer.commit()
    finally:
        for part in parts:
            part.writer.discard()
        shutil.rmtree(staging, ignore_errors=True)
    result.split = split_summary(writer, policy, bool(evaluation))
    return result, mixture_report(mixture, parts)


def _validate_source(
    source: MixSource, policy: Policy, staging: Path, split: SplitState, result: ValidationResult
) -> _Part:
    entry = source.entry
    split.shape, split.shape_file, split.shape_line = None, "", 0  # each source detects its own format
    own = dataclasses.replace(policy, data_format=entry.format, columns=entry.columns)
    part = _Part(source, PreparedWriter(staging / str(entry.index)), [])
    try:
        part.reports = validate_files("train", source.files, (own, part.writer, None), split, result)
        refuse_invalid(part.reports, own)
    except DataError as error:
        raise DataError(f"{entry.label}: {error}", error.problems) from None
    part.writer.close()
    part.shape = _shape_name(split)
    for report in part.reports:
        report.source = entry.index
    return part


def _by_file_number(split: SplitState, parts: list[_Part]) -> list[FileReport]:
    """The reports in the shared tables' file numbers: a file named by two entries has one number, and its
    repeats are counted in its first report (its second copy's records are all duplicates)."""
    first: dict[str, FileReport] = {}
    for part in parts:
        for report in part.reports:
            first.setdefault(report.path, report)
    return [first[path] for path in split.files]


def _shape_name(split: SplitState) -> str:
    """The format the source's records were locked to, with the adapter that made it."""
    if split.shape is None:
        return ""
    fmt, adapter = split.shape
    return f"{adapter.name} -> {fmt.name}" if adapter else fmt.name


def _check_together(parts: list[_Part]) -> None:
    """One prepared format per mixture: TRL trains one set of columns (its own `concatenate_datasets` fails on
    others), and two formats of one kind still render differently."""
    first, last = parts[0], parts[-1]
    if _format_of(first) != _format_of(last):
        raise DataError(
            f"{first.source.entry.label}: {first.shape} and {last.source.entry.label}: {last.shape} cannot train "
            f"together: a mixture trains one format (after adapters), and these are {_format_of(first)} and "
            f"{_format_of(last)}; convert one source to the other's format, or train them in separate runs"
        )


def _format_of(part: _Part) -> str:
    return part.shape.rsplit(" -> ", 1)[-1]


def _mix(parts: list[_Part], writer: PreparedWriter) -> None:
    """Each source's first records, TRL's counts, concatenated in list order."""
    counts = shares([len(part.writer.sides) for part in parts], [part.source.entry.fraction for part in parts])
    for part, count in zip(parts, counts, strict=True):
        entry = part.source.entry
        if count == 0:
            raise DataError(
                f"{entry.label}: its share {entry.fraction} rounds to 0 of its {len(part.writer.sides)} valid "
                "records in this mixture; raise its fraction, or delete the entry"
            )
        part.selected, part.selected_eval = count, sum(part.writer.sides[:count])
        writer.take(part.writer, count)


def mixture_report(mixture: Mixture, parts: list[_Part]) -> dict[str, Any]:
    """The report's `mixture`: what each source held and gave, and how the records were selected."""
    fractions = [entry.fraction for entry in mixture.entries]
    total = sum(fraction or 0.0 for fraction in fractions)
    entries = []
    for part in parts:
        entry, reports = part.source.entry, part.reports
        entries.append({
            "index": entry.index,
            "path": entry.path,
            "layout": part.source.layout,
            "split": entry.split,
            "columns": list(entry.columns) if entry.columns else None,
            "format": entry.format,
            "detected": part.shape,
            "fraction": entry.fraction,
            "share": round(entry.fraction / total, 6) if entry.fraction and total else None,
            "files": [{"path": report.path, "sha256": report.sha256} for report in reports],
            "records": sum(report.records for report in reports),
            "valid": len(part.writer.sides),
            "invalid": sum(report.invalid_records for report in reports),
            "selected": part.selected,
            "selected_train": part.selected - part.selected_eval,
            "selected_eval": part.selected_eval,
            "other_splits": list(part.source.other_splits),
        })  # fmt: skip
    return {
        "source": mixture.source,
        "yaml_sha256": mixture.yaml_sha256,
        "selection": SELECTION,
        "selection_note": SELECTION_NOTE if any(fractions) else "no fraction: every valid record of every source",
        "test_split_size": mixture.test_split_size,
        "entries": entries,
    }


def summary_lines(mixture: dict[str, Any] | None) -> list[str]:
    """One line per source for the log (none without a mixture)."""
    lines: list[str] = []
    for entry in (mixture or {}).get("entries", []):
        share = f", share {entry['share']:.2f}" if entry["share"] is not None else ""
        lines.append(
            f"datasets[{entry['index']}] {entry['path']} ({entry['layout']}, {entry['detected']}): "
            f"{entry['records']} records, {entry['valid']} valid{share}, {entry['selected']} selected"
            + (" (the first rows, as TRL's fraction takes them)" if entry["share"] is not None else "")
        )
        if entry["other_splits"]:
            lines.append(
                f"datasets[{entry['index']}]: its {', '.join(entry['other_splits'])} split(s) are not evaluation "
                "data; evaluation comes from test_split_size, TRAIN_EVAL_SPLIT or TRAIN_EVAL_DATA_PATH"
            )
    return lines
