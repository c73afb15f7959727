"""TRAIN_DATA_PATH as a file, a glob, a directory of shards or a Hugging Face dataset snapshot folder:
errors name the shard and its line, the report lists each file with its sha256, one format across
shards, and the same dataset in every layout gives the same prepared records and the same counts."""

from __future__ import annotations

import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dev.testing import ROOT, run_entrypoint
from jobs.data.sources import resolve_data_files, split_of

REALDATA = ROOT / "tests" / "data" / "realdata"


def _records() -> list[dict[str, Any]]:
    """The bundled Orca DPO pairs (real data: control characters, mojibake) plus a duplicate of record 5
    at the end, so that a duplicate spans shards."""
    lines = (REALDATA / "foundry_orca_dpo_pairs_validation.jsonl").read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    return [*records, records[4]]


def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode()


def _write(path: Path, records: list[dict[str, Any]]) -> Path:
    """`records` in the format the name says (.jsonl, .json, .parquet, optionally .gz)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.name.endswith(".parquet"):
        pq.write_table(pa.Table.from_pylist(records), path)
    elif path.name.endswith(".json"):
        path.write_text(json.dumps(records, ensure_ascii=False, indent=1), encoding="utf-8")
    elif path.name.endswith(".gz"):
        path.write_bytes(gzip.compress(_jsonl(records)))
    else:
        path.write_bytes(_jsonl(records))
    return path


def _thirds(records: list[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    size = -(-len(records) // 3)
    return [records[i : i + size] for i in range(0, len(records), size)]


def _layout(kind: str, root: Path, records: list[dict[str, Any]]) -> str:
    """One dataset written as `kind`; returns what TRAIN_DATA_PATH is set to."""
    parts = _thirds(records)
    if kind in ("jsonl", "json", "parquet", "jsonl.gz"):
        return str(_write(root / f"all.{kind}", records))
    if kind == "glob":
        for n, part in enumerate(parts):
            _write(root / "shards" / f"part-{n}.jsonl.gz", part)
        return str(root / "shards" / "part-*.jsonl.gz")
    if kind == "directory":  # shards of mixed file types, in name order
        for n, (part, suffix) in enumerate(zip(parts, ("jsonl", "parquet", "json"), strict=True)):
            _write(root / "dir" / f"{n:02d}.{suffix}", part)
        (root / "dir" / ".cache").mkdir()
        (root / "dir" / "README.md").write_text("a dataset card")
        return str(root / "dir")
    assert kind == "snapshot"  # the Hub's naming, with its metadata beside the data
    for n, part in enumerate(parts):
        _write(root / "snap" / "data" / f"train-{n:05d}-of-00003.parquet", part)
    (root / "snap" / ".cache" / "huggingface").mkdir(parents=True)
    (root / "snap" / "README.md").write_text("---\nconfigs: ...\n---")
    (root / "snap" / "dataset_infos.json").write_text("{}")
    return str(root / "snap")


LAYOUTS = ["jsonl", "json", "parquet", "jsonl.gz", "glob", "directory", "snapshot"]


def _validate(tmp_path: Path, data: str, **settings: str) -> tuple[Any, dict[str, Any]]:
    out = tmp_path / "out"
    run = run_entrypoint("validate", TRAIN_METHOD="dpo", TRAIN_DATA_PATH=data, TRAIN_OUTPUT_DIR=str(out),
                         TRAIN_EVAL_SPLIT="0.1", TRAIN_DROP_INVALID="true", **settings)  # fmt: skip
    report = (
        json.loads((out / "validation_report.json").read_text()) if (out / "validation_report.json").exists() else {}
    )
    return run, report


def _counts(report: dict[str, Any]) -> dict[str, Any]:
    files = report["files"]
    warnings: dict[str, int] = {}
    for file in files:
        for message, entry in file["warnings"].items():
            warnings[message] = warnings.get(message, 0) + entry["count"]
    return {
        "records": sum(f["records"] for f in files), "valid": sum(f["valid"] for f in files),
        "invalid": sum(f["invalid_records"] for f in files),
        "duplicates": sum(f["duplicates"]["count"] for f in files),
        "duplicate_prompts": sum(f["duplicate_prompts"]["count"] for f in files),
        "warnings": warnings, "split": {k: report["split"][k] for k in ("train", "eval")},
    }  # fmt: skip


def test_one_dataset_in_every_layout_gives_the_same_records_and_counts(tmp_path: Path) -> None:
    records, seen = _records(), {}
    for kind in LAYOUTS:
        run, report = _validate(tmp_path / kind, _layout(kind, tmp_path / kind, records))
        assert run.returncode == 0, (kind, run.stderr[-3000:])
        prepared = {
            side: (tmp_path / kind / "out" / "data" / f"{side}.jsonl").read_bytes() for side in ("train", "eval")
        }
        seen[kind] = (_counts(report), prepared)
        assert report["layout"] == {"jsonl": "file", "json": "file", "parquet": "file", "jsonl.gz": "file"}.get(
            kind, kind
        )
        for file in report["files"]:
            assert file["sha256"] == hashlib.sha256(Path(file["path"]).read_bytes()).hexdigest()
    reference = seen["jsonl"]
    assert reference[0]["duplicates"] == 1 and reference[0]["warnings"], reference[0]
    for kind, (counts, prepared) in seen.items():
        assert counts == reference[0], kind
        assert prepared == reference[1], kind


def test_a_snapshot_trains_on_its_train_split_and_evaluates_on_validation_else_test(tmp_path: Path) -> None:
    pairs = [{"prompt": f"Q{n}?", "chosen": f"good {n}", "rejected": f"bad {n}"} for n in range(12)]
    snap = tmp_path / "snap"
    _write(snap / "train.jsonl", pairs[:8])
    _write(snap / "test.jsonl", pairs[8:10])
    _write(snap / "validation" / "part-0.parquet", pairs[10:])
    files = resolve_data_files(str(snap), None)
    assert (files.layout, files.train, files.eval) == ("snapshot", (snap / "train.jsonl",),
                                                       (snap / "validation" / "part-0.parquet",))  # fmt: skip
    assert resolve_data_files(str(snap), str(snap / "test.jsonl")).eval == (snap / "test.jsonl",)
    (snap / "validation" / "part-0.parquet").unlink()
    assert resolve_data_files(str(snap), None).eval == (snap / "test.jsonl",)


@pytest.mark.parametrize(
    ("name", "split"),
    [("data/train-00000-of-00003.parquet", "train"), ("train.jsonl.gz", "train"), ("test.jsonl", "test"),
     ("data/validation-00001-of-00002.parquet", "validation"), ("dev.json", "validation"),
     ("validation/shard-0.jsonl", "validation"), ("my_train_file.jsonl", "train"), ("trainer.jsonl", None),
     ("contest.jsonl", None)],
)  # fmt: skip
def test_split_names_follow_the_hubs_conventions(name: str, split: str | None, tmp_path: Path) -> None:
    assert split_of(tmp_path / name, tmp_path) == split


def _bad_shard(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    bad = [dict(r) for r in records]
    bad[2]["rejected"] = bad[2]["chosen"]
    return bad


PAIRS = [{"prompt": f"Question {n}?", "chosen": f"Answer {n}.", "rejected": f"Wrong {n}."} for n in range(9)]


@pytest.mark.parametrize(
    ("layout", "expected"),
    [
        pytest.param("glob", "part-1.jsonl:3 /rejected: rejected is the same as chosen", id="glob"),
        pytest.param("directory", "01.parquet:3 /rejected: rejected is the same as chosen", id="directory"),
        pytest.param("snapshot", "train-00001-of-00003.parquet:3 /rejected: rejected is the same as chosen",
                     id="snapshot"),
        pytest.param("mixed-formats", "01.jsonl:1 /: format messages differs from the data's format preference (at ",
                     id="one-format-across-shards"),
        pytest.param("leaking-test-split", "test.jsonl:2 /: leaks into training", id="snapshot-eval-leak"),
        pytest.param("unnamed-file", "belong to no split", id="snapshot-with-a-file-of-no-split"),
    ],
)  # fmt: skip
def test_bad_shards_exit_3_naming_the_shard_and_line(layout: str, expected: str, tmp_path: Path) -> None:
    parts = _thirds(PAIRS)
    if layout == "glob":
        for n, part in enumerate(parts):
            _write(tmp_path / "s" / f"part-{n}.jsonl", _bad_shard(part) if n == 1 else part)
        data = str(tmp_path / "s" / "part-*.jsonl")
    elif layout in ("directory", "mixed-formats"):
        for n, part in enumerate(parts):
            bad = [{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}]
            shard = (bad if layout == "mixed-formats" else _bad_shard(part)) if n == 1 else part
            _write(tmp_path / "d" / f"{n:02d}.{'parquet' if layout == 'directory' else 'jsonl'}", shard)
        data = str(tmp_path / "d")
    else:
        for n, part in enumerate(parts):
            _write(tmp_path / "snap" / "data" / f"train-{n:05d}-of-00003.parquet",
                   _bad_shard(part) if n == 1 and layout == "snapshot" else part)  # fmt: skip
        if layout == "leaking-test-split":
            _write(tmp_path / "snap" / "test.jsonl", [{"prompt": "New?", "chosen": "a", "rejected": "b"}, PAIRS[7]])
        if layout == "unnamed-file":
            _write(tmp_path / "snap" / "extra.jsonl", PAIRS[:1])
        data = str(tmp_path / "snap")
    run = run_entrypoint("validate", TRAIN_METHOD="dpo", TRAIN_DATA_PATH=data, TRAIN_OUTPUT_DIR=str(tmp_path / "o"))
    assert run.returncode == 3, run.stderr[-3000:]
    assert expected in run.stderr, run.stderr[-3000:]
    assert "Traceback" not in run.stderr
