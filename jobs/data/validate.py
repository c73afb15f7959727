"""The validation pipeline: every record is read, converted, schema-checked, semantically checked, split
and written to the prepared files that training reads, in one streaming pass per file.

Policy: any invalid record refuses the data (exit 3), unless TRAIN_DROP_INVALID drops them, each one
listed, up to TRAIN_MAX_INVALID_FRACTION. Evaluation records equal to a training record (exactly or
after normalising case and whitespace) are leakage, treated the same way.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from jobs.data.adapters import ADAPTERS, Adapter, detect_adapter
from jobs.data.formats import FORMATS, Format, SchemaChecker, native_format
from jobs.data.readers import FatalReadError, Unparsable, iter_records
from jobs.data.report import EXAMPLES_PER_WARNING, FileReport
from jobs.data.semantics import Finding, check_record, hygiene, message_text
from jobs.data.shards import can_shard, copy_into, validate_in_shards
from jobs.data.split import canonical, exact_key, goes_to_eval, normalized_key
from jobs.errors import DataError

logger = logging.getLogger(__name__)

_KEPT_MESSAGE_KEYS = ("role", "content", "name", "tool_calls", "tool_call_id")


@dataclass(frozen=True)
class Policy:
    method: str
    data_format: str = "auto"
    drop_invalid: bool = False
    max_invalid_fraction: float = 0.01
    max_shown: int = 20
    eval_split: float = 0.0
    seed: int = 42


class PreparedWriter:
    """Writes accepted records to `<name>.jsonl.partial`; `commit` renames them into place."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.paths = {side: directory / f"{side}.jsonl" for side in ("train", "eval")}
        self.counts = {"train": 0, "eval": 0}
        self._handles: dict[str, IO[bytes]] = {}

    def _handle(self, side: str) -> IO[bytes]:
        handle = self._handles.get(side)
        if handle is None:
            handle = self._handles[side] = open(self.paths[side].with_suffix(".partial"), "wb")  # noqa: SIM115
        return handle

    def write(self, side: str, data: bytes) -> None:
        self._handle(side).write(data + b"\n")
        self.counts[side] += 1

    def append_files(self, other: PreparedWriter) -> None:
        """Append another (closed) writer's partial files, in order: how shards are joined."""
        for side, path in other.paths.items():
            partial = path.with_suffix(".partial")
            if other.counts[side] and partial.exists():
                copy_into(partial, self._handle(side))
                self.counts[side] += other.counts[side]

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def commit(self) -> None:
        self.close()
        for path in self.paths.values():
            partial = path.with_suffix(".partial")
            if partial.exists():
                partial.replace(path)
            else:
                path.unlink(missing_ok=True)

    def discard(self) -> None:
        self.close()
        for path in self.paths.values():
            path.with_suffix(".partial").unlink(missing_ok=True)


@dataclass
class TrainIndex:
    """Keys of the accepted training records, for the leakage check of evaluation records."""

    exact: dict[int, int] = field(default_factory=dict)  # key -> line in the training file
    normalized: dict[int, int] = field(default_factory=dict)


def prepared_record(record: dict[str, Any], fmt: Format) -> dict[str, Any]:
    """Only the format's fields; text-only content parts become strings (one Arrow type per column)."""
    if not fmt.conversational:
        return {name: record[name] for name in fmt.fields}
    return {
        name: [
            {**{k: m[k] for k in _KEPT_MESSAGE_KEYS if k in m}, "content": _flat_content(m.get("content"))}
            for m in record[name]
        ]
        for name in fmt.fields
    }


def _flat_content(content: Any) -> Any:
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return message_text(content)
    return content


def _prompt_part(record: dict[str, Any], fmt: Format) -> Any:
    if "prompt" in fmt.fields:
        return record["prompt"]
    return record["chosen"][:-1] if fmt.conversational else None


def text_length(record: dict[str, Any], fmt: Format) -> int:
    if not fmt.conversational:
        return sum(len(record[name]) for name in fmt.fields)
    return sum(len(message_text(m.get("content"))) for name in fmt.fields for m in record[name])


class FileValidator:
    """Validates one file in one pass, writing what it accepts."""

    def __init__(
        self, path: Path, role: str, policy: Policy, writer: PreparedWriter, index: TrainIndex, *, has_eval: bool
    ) -> None:
        self.path, self.role, self.policy, self.writer, self.index = path, role, policy, writer, index
        # Normalised keys cost more than the rest of a record's checks: only computed when there is an eval set.
        self.needs_normalized = has_eval
        self.quiet = False  # shard workers leave the adapter notice to the parent
        self.report = FileReport(path=str(path), role=role, max_shown=policy.max_shown)
        self.shape: tuple[Format, Adapter | None] | None = None
        self.shape_line = 0
        self.checker: SchemaChecker | None = None
        self.seen: dict[int, int] = {}
        self.prompts: dict[int, int] = {}
        self.lengths = array("I")

    def run(self, records: Iterable[tuple[int, Any]] | None = None) -> FileReport:
        for line, item in records if records is not None else iter_records(self.path):
            if isinstance(item, FatalReadError):
                self.report.fatal = f"{self.path}:{line}: {item.message}"
                break
            self.report.records += 1
            self._process(line, item)
        return self.report

    def _process(self, line: int, item: Any) -> None:
        if isinstance(item, Unparsable):
            return self._reject(line, [("/", item.message)])
        if not isinstance(item, dict):
            kind = "null" if item is None else type(item).__name__
            return self._reject(line, [("/", f"expected a JSON object, got {kind}")])
        shape = self._shape(line, item)
        if shape is None:
            return None
        fmt, adapter = shape
        try:
            record = adapter.convert(item) if adapter else item
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            name = adapter.name if adapter else fmt.name
            return self._reject(line, [("/", f"cannot convert from {name}: {error!r}")])
        return self._check(line, record, fmt, converted=adapter is not None)

    def _check(self, line: int, record: dict[str, Any], fmt: Format, converted: bool) -> None:
        assert self.checker is not None
        if not self.checker.is_valid(record):
            return self._reject(line, self.checker.violations(record), converted=converted)
        findings = check_record(record, fmt)
        self._warn(line, findings)
        errors = [(f.path, f.message) for f in findings if not f.warning]
        if errors:
            return self._reject(line, errors, converted=converted)
        return self._accept(line, record, fmt)

    def _detect(self, item: dict[str, Any]) -> tuple[Format, Adapter | None] | None:
        chosen = self.policy.data_format
        if chosen in ADAPTERS:
            return FORMATS[ADAPTERS[chosen].target], ADAPTERS[chosen]
        if chosen in FORMATS:
            return FORMATS[chosen], None
        adapter = detect_adapter(item)
        if adapter:
            return FORMATS[adapter.target], adapter
        name = native_format(item)
        return (FORMATS[name], None) if name else None

    def _shape(self, line: int, item: dict[str, Any]) -> tuple[Format, Adapter | None] | None:
        if self.shape is not None and self._same_shape(item):
            return self.shape
        shape = self._detect(item)
        if shape is None:
            keys = ", ".join(sorted(item)) or "none"
            self._reject(line, [("/", f"unknown format (keys: {keys}); see schemas/ or set TRAIN_DATA_FORMAT")])
            return None
        if self.shape is None:
            self._lock(line, shape)
        elif shape != self.shape:
            name, locked = _shape_name(shape), _shape_name(self.shape)
            self._reject(line, [("/", f"format {name} differs from the file's format {locked} (line "
                                      f"{self.shape_line}); one file holds one format")])  # fmt: skip
            return None
        return shape

    def _same_shape(self, item: dict[str, Any]) -> bool:
        """The cheap test for the common case: this record has the shape the file's first record had."""
        assert self.shape is not None
        fmt, adapter = self.shape
        if adapter is not None:
            return self.policy.data_format == adapter.name or adapter.matches(item)
        return self.policy.data_format == fmt.name or native_format(item) == fmt.name

    def _lock(self, line: int, shape: tuple[Format, Adapter | None]) -> None:
        fmt, adapter = shape
        if fmt.method != self.policy.method:
            raise DataError(
                f"{self.path}:{line}: this is {fmt.method.upper()} data ({_shape_name(shape)}), but "
                f"TRAIN_METHOD={self.policy.method}; set TRAIN_METHOD={fmt.method} or use {self.policy.method} data"
            )
        self.shape, self.shape_line = shape, line
        self.checker = SchemaChecker(fmt.name)
        self.report.format, self.report.adapter = fmt.name, adapter.name if adapter else None
        self._announce()

    def _announce(self) -> None:
        assert self.shape is not None
        fmt, adapter = self.shape
        if adapter and self.policy.data_format == "auto" and not self.quiet:
            logger.info(
                "%s: records look like %s; converting them to %s (set TRAIN_DATA_FORMAT=%s to make it explicit)",
                self.path, adapter.description, fmt.name, adapter.name,
            )  # fmt: skip

    def _reject(self, line: int, problems: list[tuple[str, str]], converted: bool = False) -> None:
        self.report.invalid_records += 1
        note = f" (in the record converted by the {self.report.adapter} adapter)" if converted else ""
        for path, message in problems:
            self.report.add_error(line, path, message + note)
        if self.policy.drop_invalid:
            self.report.dropped.append({"line": line, "problems": [f"{p}: {m}" for p, m in problems]})

    def _warn(self, line: int, findings: list[Finding]) -> None:
        warned: set[str] = set()
        for finding in findings:
            if finding.warning and finding.message not in warned:  # one count per record and kind
                warned.add(finding.message)
                self.report.add_warning(line, finding.path, finding.message)

    def _accept(self, line: int, record: dict[str, Any], fmt: Format) -> None:
        prepared = prepared_record(record, fmt)
        data = canonical(prepared)
        self._warn(line, hygiene(record, fmt, data))
        exact = exact_key(data)
        normalized = normalized_key(prepared, fmt.fields, fmt.conversational) if self.needs_normalized else 0
        first = self.seen.setdefault(exact, line)
        if first != line:
            self.report.add_example(self.report.duplicates, {"line": line, "first_line": first})
        self._note_prompt(line, record, fmt)
        if self.role == "eval" and self._leaks(line, exact, normalized):
            return
        side = (
            "eval"
            if self.role == "eval" or goes_to_eval(normalized, self.policy.eval_split, self.policy.seed)
            else "train"
        )
        if side == "train" and self.needs_normalized:
            self.index.exact.setdefault(exact, line)
            self.index.normalized.setdefault(normalized, line)
        self.writer.write(side, data)
        self.lengths.append(text_length(record, fmt))
        self.report.valid += 1

    def _note_prompt(self, line: int, record: dict[str, Any], fmt: Format) -> None:
        prompt = _prompt_part(record, fmt) if fmt.method == "dpo" else None
        if prompt:
            first = self.prompts.setdefault(exact_key(orjson.dumps(prompt)), line)
            if first != line:
                self.report.add_example(self.report.duplicate_prompts, {"line": line, "first_line": first})

    def _leaks(self, line: int, exact: int, normalized: int) -> bool:
        kind = "exact" if exact in self.index.exact else "normalized" if normalized in self.index.normalized else None
        if kind is None:
            return False
        train_line = self.index.exact.get(exact) or self.index.normalized[normalized]
        self.report.add_example(self.report.leakage, {"line": line, "train_line": train_line, "kind": kind})
        self.report.leakage[kind] += 1
        what = "equal to" if kind == "exact" else "equal after normalising case and whitespace to"
        self._reject(line, [("/", f"leaks into training: {what} training record at line {train_line}")])
        return True

    def absorb(self, shard: FileValidator, offset: int) -> None:
        """Merge a shard's findings (lines relative to its range) into this file's, `offset` lines on."""
        if self.shape is None and shard.shape is not None:
            self.shape, self.shape_line, self.checker = shard.shape, shard.shape_line + offset, shard.checker
            self.report.format, self.report.adapter = shard.report.format, shard.report.adapter
            self._announce()
        _absorb_report(self.report, shard.report, offset)
        for key, line in shard.seen.items():  # duplicates across shards
            first = self.seen.setdefault(key, line + offset)
            if first != line + offset:
                self.report.add_example(self.report.duplicates, {"line": line + offset, "first_line": first})
        for key, line in shard.prompts.items():
            first = self.prompts.setdefault(key, line + offset)
            if first != line + offset:
                self.report.add_example(self.report.duplicate_prompts, {"line": line + offset, "first_line": first})
        if self.role == "train":
            for mine, theirs in (
                (self.index.exact, shard.index.exact),
                (self.index.normalized, shard.index.normalized),
            ):
                for key, line in theirs.items():
                    mine.setdefault(key, line + offset)
        self.lengths.extend(shard.lengths)


def _shifted(entries: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    keys = ("line", "first_line")
    return [{**e, **{k: e[k] + offset for k in keys if k in e}} for e in entries]


def _absorb_report(mine: FileReport, theirs: FileReport, offset: int) -> None:
    mine.records += theirs.records
    mine.valid += theirs.valid
    mine.invalid_records += theirs.invalid_records
    room = max(0, mine.max_shown - len(mine.errors))
    mine.errors += _shifted(theirs.errors, offset)[:room]
    mine.error_count += theirs.error_count
    mine.fatal = mine.fatal or theirs.fatal
    mine.dropped += _shifted(theirs.dropped, offset)
    for message, entry in theirs.warnings.items():
        bucket = mine.warnings.setdefault(message, {"count": 0, "examples": []})
        bucket["count"] += entry["count"]
        bucket["examples"] = (bucket["examples"] + _shifted(entry["examples"], offset))[:EXAMPLES_PER_WARNING]
    for name in ("duplicates", "duplicate_prompts", "leakage"):
        bucket, other = getattr(mine, name), getattr(theirs, name)
        for key, value in other.items():
            if key == "examples":
                bucket[key] = (bucket[key] + _shifted(value, offset))[:EXAMPLES_PER_WARNING]
            else:
                bucket[key] += value


def _shape_name(shape: tuple[Format, Adapter | None]) -> str:
    fmt, adapter = shape
    return f"{adapter.name} -> {fmt.name}" if adapter else fmt.name


def refusal(report: FileReport, policy: Policy) -> str | None:
    """Why this file's data must be refused under the policy, or None."""
    if report.fatal:
        return report.fatal
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
