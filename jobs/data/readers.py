"""Streaming readers: .jsonl, .json (one array), .parquet, each optionally gzip-compressed.

Memory stays flat in the file size: records are yielded one at a time; a JSON array is split into its
elements by a byte scanner (strings and escapes aware) and each element is parsed alone. Input that
cannot be parsed becomes an `Unparsable` item carrying its line, never an exception from deep inside a
library (the JSON reader under `datasets` segfaults on deeply nested input; orjson stops at depth 1024).
"""

from __future__ import annotations

import gzip
import io
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
CHUNK = 1 << 20
READ_BUFFER = 1 << 20


class NotParsed:
    """The item of a line read with parse=False: its reader (the validator) parses it when it needs to."""


NOT_PARSED = NotParsed()


def parse_line(line: bytes) -> Any:
    """A .jsonl line's record, or Unparsable."""
    try:
        return orjson.loads(line)
    except orjson.JSONDecodeError as error:
        return Unparsable(f"not valid JSON: {error}")


class Unparsable(NamedTuple):
    """A record that is not valid JSON; `message` says why."""

    message: str


class FatalReadError(NamedTuple):
    """The rest of the file cannot be read (a broken JSON array cannot be resynchronised)."""

    message: str


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
    for line, item, _ in iter_lines(path):
        yield line, item


def iter_lines(path: Path, parse: bool = True) -> Iterator[tuple[int, Any, bytes | None]]:
    """`iter_records` with each .jsonl record's line as written (None from other file types); with
    parse=False a .jsonl line's item is NOT_PARSED."""
    suffix = base_suffix(path)
    try:
        if suffix == ".parquet":
            yield from ((row, record, None) for row, record in _iter_parquet(path))
        elif suffix == ".json":
            yield from ((line, record, None) for line, record in iter_json_array(path))
        else:
            yield from LineCounter(path, parse=parse)
    except (OSError, EOFError, gzip.BadGzipFile) as error:
        yield 0, FatalReadError(f"the file cannot be read to its end ({error})"), None


class LineCounter:
    """The records of a .jsonl file, or of the byte range [start, end) of one, each with its line as written
    (without a BOM); `lines` counts every line read. With parse=False each item is NOT_PARSED."""

    def __init__(self, path: Path, start: int = 0, end: int | None = None, *, parse: bool = True) -> None:
        self.path, self.start, self.end, self.parse = path, start, end, parse
        self.lines = 0

    def __iter__(self) -> Iterator[tuple[int, Any, bytes | None]]:
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
                    yield lines, (parse_line(line) if self.parse else NOT_PARSED), line
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
                shutil.copyfileobj(compressed, plain, CHUNK)
        try:
            parquet = pq.ParquetFile(source)
            row = 0
            for batch in parquet.iter_batches(batch_size=1024):
                for record in batch.to_pylist():
                    row += 1
                    yield row, without_nulls(record)
        except Exception as error:  # pyarrow raises several unrelated types for a corrupt file
            yield 0, FatalReadError(f"not a readable parquet file ({error})")


# Outside strings the scanner stops at structure and newlines; inside strings only at quotes and escapes.
_STRUCTURE = re.compile(rb'["\[\]{},\n]')
_IN_STRING = re.compile(rb'["\\]')


class _ArrayScanner:
    """Splits a top-level JSON array into element byte strings, tracking line numbers."""

    def __init__(self, handle: IO[bytes]) -> None:
        self.handle = handle
        self.buf = b""
        self.pos = 0  # scan position in buf
        self.line = 1  # line number at `pos`
        self.depth = 0
        self.start: int | None = None  # offset in buf of the current element's first byte
        self.start_line = 1
        self.after_comma = False
        self.eof = False

    def _more(self) -> bool:
        if self.eof:
            return False
        chunk = self.handle.read(CHUNK)
        if not chunk:
            self.eof = True
            return False
        keep = self.start if self.start is not None else self.pos
        self.buf = self.buf[keep:] + chunk
        self.pos -= keep
        if self.start is not None:
            self.start = 0
        return True

    def _search(self, pattern: re.Pattern[bytes]) -> re.Match[bytes] | None:
        while True:
            match = pattern.search(self.buf, self.pos)
            if match:
                return match
            if not self._more():
                return None

    def open_array(self) -> None:
        while not self.buf.lstrip(BOM).strip() and self._more():
            pass
        text = self.buf.removeprefix(BOM)
        stripped = text.lstrip()
        if not stripped:
            raise DataError("the file is empty")
        if not stripped.startswith(b"["):
            raise DataError("a .json data file must hold one JSON array of records (use .jsonl for one per line)")
        offset = len(self.buf) - len(stripped)
        self.line += self.buf.count(b"\n", 0, offset)
        self.pos = offset + 1
        self.depth = 1
        self._begin_element()

    def _begin_element(self) -> None:
        self.start, self.start_line = self.pos, self.line

    def _skip_string(self) -> bool:
        while True:
            match = self._search(_IN_STRING)
            if match is None:
                return False
            self.line += self.buf.count(b"\n", self.pos, match.start())
            if match.group() == b"\\":
                self.pos = match.end() + 1
                if self.pos > len(self.buf) and not self._more():
                    return False
                continue
            self.pos = match.end()
            return True

    def elements(self) -> Iterator[tuple[int, bytes]]:
        """Yield (line, element bytes); raises DataError for a structural problem."""
        while True:
            match = self._search(_STRUCTURE)
            if match is None:
                raise DataError(f"line {self.line}: the JSON array is not closed (the file is truncated)")
            char, self.pos = match.group(), match.end()
            if char == b"\n":
                self.line += 1
            elif char == b'"':
                if not self._skip_string():
                    raise DataError(f"line {self.line}: a string is not closed (the file is truncated)")
            elif char in b"[{":
                self.depth += 1
            elif char in b"]}" or (char == b"," and self.depth == 1):
                element = self._close(char)
                if element is not None:
                    yield element
                if self.depth == 0:
                    self._expect_end()
                    return

    def _close(self, char: bytes) -> tuple[int, bytes] | None:
        if char != b",":
            self.depth -= 1
            if self.depth > 0:
                return None
        assert self.start is not None
        raw = self.buf[self.start : self.pos - 1]
        body = raw.lstrip()
        line = self.start_line + raw.count(b"\n", 0, len(raw) - len(body))
        self._begin_element()
        if body.strip():
            self.after_comma = char == b","
            return line, body
        if char == b"," or self.after_comma:
            raise DataError(f"line {line}: empty array element (a trailing or doubled comma); remove the comma")
        return None

    def _expect_end(self) -> None:
        while self._more():
            pass
        if self.buf[self.pos :].strip():
            raise DataError(f"line {self.line}: unexpected data after the closing ] of the array")


def iter_json_array(path: Path) -> Iterator[tuple[int, Any]]:
    with open_binary(path) as handle:
        scanner = _ArrayScanner(handle)
        try:
            scanner.open_array()
            for line, element in scanner.elements():
                try:
                    yield line, orjson.loads(element)
                except orjson.JSONDecodeError as error:
                    at = line + element.count(b"\n", 0, error.pos)
                    yield at, FatalReadError(f"line {at}: not valid JSON ({error.msg}); the array cannot be read on")
                    return
        except DataError as error:
            yield scanner.line, FatalReadError(str(error))
