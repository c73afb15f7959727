"""Readers: every file type yields the same records; a JSON array's elements come with their lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.data import readers
from jobs.data.readers import FatalReadError, Unparsable, iter_records

RECORDS = [{"text": f"row {i}"} for i in range(10)]


def _write(path: Path, kind: str) -> Path:
    jsonl = "".join(json.dumps(r) + "\n" for r in RECORDS).encode()
    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(RECORDS), path)
    elif kind == "parquet.gz":
        pq.write_table(pa.Table.from_pylist(RECORDS), path.with_suffix(""))
        path.write_bytes(gzip.compress(path.with_suffix("").read_bytes()))
    elif kind in ("json", "json.gz"):
        body = json.dumps(RECORDS, indent=2).encode()
        path.write_bytes(gzip.compress(body) if kind.endswith("gz") else body)
    else:
        path.write_bytes(gzip.compress(jsonl) if kind.endswith("gz") else jsonl)
    return path


@pytest.mark.parametrize("kind", ["jsonl", "jsonl.gz", "json", "json.gz", "parquet", "parquet.gz"])
def test_every_file_type_yields_the_same_records(kind: str, tmp_path: Path) -> None:
    path = _write(tmp_path / f"data.{kind}", kind)
    assert [record for _, record in iter_records(path)] == RECORDS


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        pytest.param(
            '[\n {"t": "a,]}[{\\""},\n {"t": 2}\n]', [(2, {"t": 'a,]}[{"'}), (3, {"t": 2})], id="tricky-strings"
        ),
        pytest.param("[]", [], id="empty-array"),
        pytest.param('[1, "x", null]', [(1, 1), (1, "x"), (1, None)], id="scalars"),
        pytest.param('\ufeff[{"t": 1}]', [(1, {"t": 1})], id="bom"),
    ],
)
def test_json_array_elements_come_with_the_line_they_start_on(text: str, expected: list, tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(text, encoding="utf-8")
    assert list(iter_records(path)) == expected


@pytest.mark.parametrize(
    ("text", "line", "message"),
    [
        pytest.param('{"t": 1}', 1, "must hold one JSON array", id="not-an-array"),
        pytest.param('[{"t": 1},\n{"t": 2}', 2, "not valid JSON (the array is not closed", id="truncated"),
        pytest.param('[\n{"t": "a', 2, "not valid JSON (Unterminated string", id="open-string"),
        pytest.param('[{"t": 1}]\n tail', 2, "unexpected data after", id="trailing-data"),
        pytest.param('[{"t": 1},,{"t": 2}]', 1, "an empty element (a doubled or trailing comma)", id="double-comma"),
        pytest.param('[{"t": 1},\n]', 2, "not valid JSON (an empty element", id="trailing-comma"),
        pytest.param('[\n{"t": }\n]', 2, "not valid JSON", id="bad-element"),
        pytest.param('[\n{"t": 1},\n{"t":\n NaN}]', 3, "NaN is not JSON", id="nan-at-its-elements-line"),
        pytest.param('[\n{"t": 1},\n' + "[" * 5000 + "]" * 5000 + "]", 3, "nested too deeply", id="deep"),
        pytest.param("  ", 1, "the file is empty", id="empty"),
    ],
)
def test_broken_json_arrays_stop_with_a_located_error(text: str, line: int, message: str, tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_text(text)
    at, last = list(iter_records(path))[-1]
    assert isinstance(last, FatalReadError) and message in last.message and at == line, (at, last)
    assert "line" not in last.message.split("(")[0]  # the line is the item's, not repeated in the message


def test_integers_beyond_64_bits_read_as_orjson_reads_them(tmp_path: Path) -> None:
    """As a .jsonl line would give them: whole within 64 bits, a float beyond."""
    path = tmp_path / "a.json"
    path.write_text('[{"n": 18446744073709551615}, {"n": 18446744073709551616}, {"n": -9223372036854775809}]')
    assert [record["n"] for _, record in iter_records(path)] == [2**64 - 1, 2.0**64, -(2.0**63)]


def test_a_json_array_over_the_cap_is_refused_with_the_conversion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(readers, "JSON_ARRAY_MAX_BYTES", 100)
    path = tmp_path / "big.json"
    path.write_text(json.dumps(RECORDS))
    (_, last), *_ = list(iter_records(path))
    assert isinstance(last, FatalReadError) and "jq -c '.[]' big.json > big.jsonl" in last.message


def test_a_json_array_that_is_not_utf8_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "a.json"
    path.write_bytes(b'[\n{"t": "ok"},\n{"t": "caf\xe9"}]')
    line, last = list(iter_records(path))[-1]
    assert isinstance(last, FatalReadError) and last.message.startswith("not UTF-8") and line == 3


def test_unparsable_lines_do_not_stop_a_jsonl_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b'{"text": "a"}\n{bad\n' + b"[" * 5000 + b"]" * 5000 + b'\n{"text": "b"}\n')
    items = list(iter_records(path))
    assert [line for line, _ in items] == [1, 2, 3, 4]
    assert isinstance(items[1][1], Unparsable) and isinstance(items[2][1], Unparsable)
    assert items[3][1] == {"text": "b"}


def test_a_corrupt_gzip_is_a_located_fatal_error(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"text": "a"}\n' * 100)[:40])
    assert isinstance(list(iter_records(path))[-1][1], FatalReadError)


def test_a_corrupt_parquet_is_a_fatal_error(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1 not really")
    assert isinstance(list(iter_records(path))[-1][1], FatalReadError)
