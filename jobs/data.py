"""Training data: read records, detect their format, split once, and write what training consumes.

The job trains on exactly the records validated here: `prepare_data` writes them to
`<output_dir>/data/{train,eval}.jsonl`, and every rank reads those files, never the user's file again.
"""

from __future__ import annotations

import gzip
import io
import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import orjson

from jobs.errors import DataError, EnvironmentProblem

# Format name -> (method, the keys that identify it). Checked in order: the first match wins.
FORMATS: dict[str, tuple[str, frozenset[str]]] = {
    "preference": ("dpo", frozenset({"prompt", "chosen", "rejected"})),
    "implicit_preference": ("dpo", frozenset({"chosen", "rejected"})),
    "prompt_completion": ("sft", frozenset({"prompt", "completion"})),
    "messages": ("sft", frozenset({"messages"})),
    "text": ("sft", frozenset({"text"})),
}
SUFFIXES = (".jsonl", ".json", ".parquet")
MAX_SHOWN_ERRORS = 20


@dataclass
class DataReport:
    """What validation found in one file; serialised into validation_report.json."""

    path: str
    format: str | None = None
    records: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    error_count: int = 0

    def add_error(self, line: int, path: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < MAX_SHOWN_ERRORS:
            self.errors.append({"file": self.path, "line": line, "path": path, "message": message})


def detect_format(record: dict[str, Any]) -> str | None:
    keys = set(record)
    for name, (_, required) in FORMATS.items():
        if required <= keys:
            return name
    return None


def _open_text(path: Path) -> IO[bytes]:
    raw: IO[bytes] = open(path, "rb")  # noqa: SIM115 - handed to the caller, closed by its `with`
    if path.suffix == ".gz":
        return gzip.open(raw)  # type: ignore[return-value]
    return raw


def _base_suffix(path: Path) -> str:
    return Path(path.stem).suffix if path.suffix == ".gz" else path.suffix


def check_readable(path: Path, variable: str) -> None:
    """Refuse a missing, unreadable or unsupported data file before anything is parsed."""
    if not path.exists():
        raise EnvironmentProblem(f"{variable}={path} does not exist; mount the data or fix the path")
    if path.is_dir():
        raise EnvironmentProblem(f"{variable}={path} is a directory; point it at one data file")
    try:
        with open(path, "rb") as handle:
            handle.read(1)
    except OSError as error:
        raise EnvironmentProblem(
            f"{variable}={path} cannot be read ({error.strerror}); check its permissions"
        ) from None
    if _base_suffix(path) not in SUFFIXES:
        raise DataError(f"{variable}={path}: unsupported file type; use one of {', '.join(SUFFIXES)} (optionally .gz)")


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line or row number, parsed record), raising DataError on unparsable input."""
    suffix = _base_suffix(path)
    if suffix == ".parquet":
        yield from _iter_parquet(path)
    elif suffix == ".json":
        yield from _iter_json_array(path)
    else:
        yield from _iter_jsonl(path)


def _iter_jsonl(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as handle:
        for number, raw_line in enumerate(handle, start=1):
            line = raw_line.removeprefix(b"\xef\xbb\xbf") if number == 1 else raw_line
            if not line.strip():
                continue
            try:
                yield number, orjson.loads(line)
            except orjson.JSONDecodeError as error:
                raise DataError(f"{path}:{number}: not valid JSON ({error}); fix or remove that line") from None


def _iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    with _open_text(path) as handle:
        text = handle.read().removeprefix(b"\xef\xbb\xbf")
    try:
        records = orjson.loads(text)
    except orjson.JSONDecodeError as error:
        line = text.count(b"\n", 0, error.pos) + 1
        raise DataError(f"{path}:{line}: not valid JSON ({error}); fix the file") from None
    if not isinstance(records, list):
        raise DataError(f"{path}: a .json data file must hold one JSON array of records")
    yield from enumerate(records, start=1)


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(io.BytesIO(_open_text(path).read()) if path.suffix == ".gz" else path)
    except Exception as error:  # pyarrow raises several unrelated types for a corrupt file
        raise DataError(f"{path}: not a readable parquet file ({error})") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=1024):
        for record in batch.to_pylist():
            row += 1
            yield row, record


def read_file(path: Path, method: str) -> tuple[list[dict[str, Any]], DataReport]:
    """Read and check every record of one file for `method`; invalid records are listed in the report."""
    report = DataReport(path=str(path))
    records: list[dict[str, Any]] = []
    for line, record in iter_records(path):
        problem = _check_record(record, method, report)
        if problem:
            report.add_error(line, *problem)
        else:
            records.append(record)
        report.records += 1
    if report.records == 0:
        raise DataError(f"{path}: holds no records; it is empty or has blank lines only")
    return records, report


def refuse_invalid(report: DataReport) -> None:
    """Raise DataError naming the first invalid records (file:line field: message) and the total."""
    if report.error_count:
        shown = [f"{e['file']}:{e['line']} {e['path'] or '(record)'}: {e['message']}" for e in report.errors]
        raise DataError(f"{report.path}: {report.error_count} of {report.records} records are invalid", shown)


def _check_record(record: Any, method: str, report: DataReport) -> tuple[str, str] | None:
    if not isinstance(record, dict):
        return "", f"expected a JSON object, got {type(record).__name__}"
    name = detect_format(record)
    if name is None:
        known = "; ".join(f"{n}: {', '.join(sorted(keys))}" for n, (_, keys) in FORMATS.items())
        return "", f"unknown format (keys: {', '.join(sorted(record)) or 'none'}); expected one of {known}"
    expected_method = FORMATS[name][0]
    if expected_method != method:
        return "", f"a {name} record is {expected_method.upper()} data, but TRAIN_METHOD={method}"
    if report.format is None:
        report.format = name
    elif report.format != name:
        return "", f"format {name} differs from the file's format {report.format}; one file holds one format"
    return None


def split_records(
    records: list[dict[str, Any]], fraction: float, seed: int
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Split once, deterministically from the seed: one shuffle serves both halves, so they cannot overlap."""
    order = list(range(len(records)))
    random.Random(seed).shuffle(order)
    n_eval = round(len(records) * fraction)
    if fraction > 0 and (n_eval == 0 or n_eval == len(records)):
        raise DataError(f"TRAIN_EVAL_SPLIT={fraction} of {len(records)} records leaves an empty split; change it")
    eval_ids = set(order[:n_eval])
    train = [r for i, r in enumerate(records) if i not in eval_ids]
    held_out = [r for i, r in enumerate(records) if i in eval_ids]
    return train, held_out


def write_jsonl(records: list[dict[str, Any]], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as handle:
        for record in records:
            handle.write(orjson.dumps(record) + b"\n")
    partial.replace(path)


def prepared_paths(output_dir: Path) -> tuple[Path, Path]:
    """Where the validated training and evaluation records live for the training processes."""
    return output_dir / "data" / "train.jsonl", output_dir / "data" / "eval.jsonl"
