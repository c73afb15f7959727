"""Data reading and the one split: formats by file type, a split that cannot leak."""

from __future__ import annotations

import gzip
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.data import iter_records, read_file, split_records
from jobs.errors import DataError

RECORDS = [{"text": f"row {i}"} for i in range(10)]


def _write(path: Path, kind: str) -> Path:
    import json

    if kind == "parquet":
        pq.write_table(pa.Table.from_pylist(RECORDS), path)
    elif kind == "json":
        path.write_text(json.dumps(RECORDS))
    elif kind == "jsonl.gz":
        path.write_bytes(gzip.compress("".join(json.dumps(r) + "\n" for r in RECORDS).encode()))
    else:
        path.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(json.dumps(r) for r in RECORDS).encode() + b"\r\n\r\n")
    return path


@pytest.mark.parametrize("kind", ["jsonl", "json", "parquet", "jsonl.gz"])
def test_every_file_type_yields_the_same_records(kind: str, tmp_path: Path) -> None:
    path = _write(tmp_path / f"data.{kind}", kind)
    assert [record for _, record in iter_records(path)] == RECORDS
    records, report = read_file(path, "sft")
    assert len(records) == 10 and report.format == "text" and report.error_count == 0


def test_the_split_is_one_shuffle_and_deterministic() -> None:
    records = [{"text": str(i)} for i in range(100)]
    train, held_out = split_records(records, 0.1, seed=7)
    assert len(held_out) == 10 and len(train) == 90
    assert not {r["text"] for r in train} & {r["text"] for r in held_out}
    assert split_records(records, 0.1, seed=7) == (train, held_out)
    assert split_records(records, 0.1, seed=8)[1] != held_out


def test_a_split_that_leaves_nothing_is_refused() -> None:
    with pytest.raises(DataError, match="leaves an empty split"):
        split_records([{"text": "a"}, {"text": "b"}], 0.1, seed=1)


def test_a_broken_json_array_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text('[\n{"text": "a"},\n{"text": }\n]')
    with pytest.raises(DataError, match=r"data.json:3"):
        list(iter_records(path))
