"""Readers: .jsonl, .json (one array), .parquet, each optionally gzip-compressed.

A .jsonl file is streamed, one record a line. A .json array is read whole (it is one JSON value) and split
into its elements by the standard library's decoder, each with the line it starts on; it may be at most
JSON_ARRAY_MAX_BYTES, and larger data belongs in .jsonl. Parquet is read in batches of rows. Input that
cannot be parsed becomes an `Unparsable` item carrying its line, never an exception from deep inside a
library (orjson stops at 1,024 levels of nesting; the JSON reader under `datasets` segfaults deeper).
"""

from __future__ import annotations

import gzip
import io
import json
import re
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, NamedTuple

import orjson

from jobs.errors import DataError, EnvironmentProblem

SUFFIXES = (".jsonl", ".json", ".parquet")
BOM = b"\xef\xbb\xbf"
READ_BUFFER = 1 << 20
# A .json array is one JSON value, parsed whole in memory (a few times its size as Python objects).
JSON_ARRAY_MAX_BYTES = 1 << 30


class Unparsable(NamedTuple):
    """A record that is not valid JSON; `message` says why."""

    message: str


class FatalReadError(NamedTuple):
    """The rest of the file cannot be read (a broken JSON array cannot be resynchronised)."""

    message: str


def parse_line(line: bytes) -> Any:
    """A .jsonl line's record, or Unparsable."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return Unparsable(f"not valid JSON: {error}")


def base_suffix(path: Path) -> str:
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
    if base_suffix(path) not in SUFFIXES:
        raise DataError(f"{variable}={path}: unsupported file type; use one of {', '.join(SUFFIXES)} (optionally .gz)")


def open_binary(path: Path) -> IO[bytes]:
    """The file's bytes, decompressed from .gz. Read in large blocks: with the file system's 4 KiB, reading
    lines of a few KB costs a system call a line, a third of what parsing them costs."""
    if path.suffix == ".gz":
        return io.BufferedReader(gzip.open(path, "rb"), READ_BUFFER)  # type: ignore[arg-type]
    return open(path, "rb", buffering=READ_BUFFER)


def iter_records(path: Path) -> Iterator[tuple[int, Any]]:
    """Yield (1-based line or row, parsed record | Unparsable | FatalReadError)."""
    suffix = base_suffix(path)
    try:
        if suffix == ".parquet":
            yield from _iter_parquet(path)
        elif suffix == ".json":
            yield from iter_json_array(path)
        else:
            yield from LineCounter(path)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        yield 0, FatalReadError(f"the file cannot be read to its end ({error})")


class LineCounter:
    """The records of a .jsonl file, or of the byte range [start, end) of one; `lines` counts every line read."""

    def __init__(self, path: Path, start: int = 0, end: int | None = None) -> None:
        self.path, self.start, self.end = path, start, end
        self.lines = 0

    def __iter__(self) -> Iterator[tuple[int, Any]]:
        end = self.end if self.end is not None else float("inf")
        with open_binary(self.path) as handle:
            if self.start:
                handle.seek(self.start)
            position, lines = self.start, 0
            try:
                for raw_line in handle:
                    if position >= end:
                        break
                    line = raw_line.removeprefix(BOM) if position == 0 else raw_line
                    position += len(raw_line)
                    lines += 1
                    if line.isspace() or not line:  # no stripped copy of every line
                        continue
                    yield lines, parse_line(line)
            finally:
                self.lines = lines


def without_nulls(value: Any) -> Any:
    """A parquet row as it was written: Arrow gives every row of a column every key any row has (a message
    without `tool_calls` reads back with `tool_calls: None`), so keys whose value is null are dropped."""
    if isinstance(value, dict):
        return {key: without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [without_nulls(item) for item in value]
    return value


def _iter_parquet(path: Path) -> Iterator[tuple[int, Any]]:
    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory() as scratch:
        source = path
        if path.suffix == ".gz":  # parquet needs random access: decompress to disk, never to memory
            source = Path(scratch) / path.stem
            with open_binary(path) as compressed, open(source, "wb") as plain:
                shutil.copyfileobj(compressed, plain, READ_BUFFER)
        try:
            parquet = pq.ParquetFile(source)
            row = 0
            for batch in parquet.iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    row += 1
                    yield row, without_nulls(record)
        except Exception as error:  # pyarrow raises several unrelated types for a corrupt file
            yield 0, FatalReadError(f"not a readable parquet file ({error})")


_SPACE = re.compile(r"[ \t\n\r]*")  # JSON's whitespace


class _ArrayError(Exception):
    """Why a .json array cannot be read on, and the line where that was found."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")  # Python's decoder accepts NaN and Infinity; JSON does not


def _integer(text: str) -> int | float:
    """An integer as orjson reads one in a .jsonl line: beyond 64 bits, a float (Python's decoder would keep it
    whole, and orjson could not write it into the prepared file)."""
    value = int(text)
    return value if -(1 << 63) <= value < (1 << 64) else float(text)


def _read_array_text(path: Path) -> str:
    """The whole file as text; _ArrayError when it is too large to read whole or not UTF-8."""
    with open_binary(path) as handle:
        data = handle.read(JSON_ARRAY_MAX_BYTES + 1)
    if len(data) > JSON_ARRAY_MAX_BYTES:
        raise _ArrayError(1, f"a .json array is read whole, and this one is over {JSON_ARRAY_MAX_BYTES >> 30} GiB; "
                             f"write it as .jsonl, one record a line (jq -c '.[]' {path.name} > {path.stem}.jsonl), "
                             "which is streamed")  # fmt: skip
    try:
        return data.removeprefix(BOM).decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise _ArrayError(line, f"not UTF-8 text (byte {error.start}); save the file as UTF-8") from None


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    """The elements of a .json file's top-level array, each with the line it starts on. What cannot be read
    (a syntax error, an element nested deeper than the decoder goes) ends the file with a FatalReadError at
    its line: an array cannot be resynchronised after it."""
    line, counted = 1, 0
    try:
        text = _read_array_text(path)
        position = _skip_space(text, 0)
        if position == len(text):
            raise _ArrayError(1, "the file is empty")
        if text[position] != "[":
            raise _ArrayError(1, "a .json data file must hold one JSON array of records (use .jsonl for one per line)")
        for start, element in _elements(text, position + 1):
            line += text.count("\n", counted, start)
            counted = start
            yield line, element
    except json.JSONDecodeError as error:
        yield error.lineno, FatalReadError(f"not valid JSON ({error.msg}); the array cannot be read on")
    except _ArrayError as error:
        yield error.line, FatalReadError(str(error))


def _elements(text: str, position: int) -> Iterator[tuple[int, Any]]:
    """(start, element) of each element of the array whose `[` ends just before `position`; the array must then
    end with its `]`, and only whitespace may follow. Every failure is a JSONDecodeError at its position (an
    element the decoder refuses as a whole: at its start)."""
    decoder = json.JSONDecoder(parse_constant=_refuse_constant, parse_int=_integer)
    position = _skip_space(text, position)
    if not text.startswith("]", position):
        while True:
            element, end = _decode(decoder, text, position)
            yield position, element
            position = _skip_space(text, end)
            if text.startswith("]", position):
                break
            if position == len(text):
                raise json.JSONDecodeError("the array is not closed (the file is truncated)", text, position)
            if not text.startswith(",", position):
                raise json.JSONDecodeError("expected , or ] after an element", text, position)
            position = _skip_space(text, position + 1)
            if text.startswith((",", "]"), position):
                raise json.JSONDecodeError("an empty element (a doubled or trailing comma); remove the comma",
                                           text, position)  # fmt: skip
    rest = _skip_space(text, position + 1)
    if rest != len(text):
        raise json.JSONDecodeError("unexpected data after the closing ] of the array", text, rest)


def _decode(decoder: json.JSONDecoder, text: str, position: int) -> tuple[Any, int]:
    """The element at `position` and where it ends."""
    try:
        return decoder.raw_decode(text, position)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise json.JSONDecodeError("an element nested too deeply for a JSON reader", text, position) from None
    except ValueError as error:  # a refused constant
        raise json.JSONDecodeError(str(error), text, position) from None


def _skip_space(text: str, position: int) -> int:
    return _SPACE.match(text, position).end()  # type: ignore[union-attr]  # matches the empty string too
