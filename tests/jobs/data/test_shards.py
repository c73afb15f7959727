"""Sharded validation finds exactly what the sequential pass finds, at the same lines, in the same order."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from jobs.data import shards
from jobs.data.validate import ValidationResult, validate_dataset
from jobs.preflight.data import data_policy


def _run(path: Path, out: Path, sharded: bool, monkeypatch: pytest.MonkeyPatch, **policy) -> ValidationResult:
    with monkeypatch.context() as patch:
        patch.setattr(shards, "SHARD_MIN_BYTES", 1 if sharded else 1 << 60)
        patch.setattr(shards, "worker_count", lambda: 3)  # three ranges even on a one-CPU machine
        return validate_dataset(path, policy.pop("evaluation", None), data_policy(**policy), out)


def _comparable(result: ValidationResult) -> list[dict]:
    return [{k: v for k, v in f.as_dict().items() if k != "path"} for f in result.files]


def _file(tmp_path: Path) -> Path:
    lines = []
    for i in range(300):
        record = {"prompt": f"Q{i % 250}?", "chosen": f"Yes {i % 250}.", "rejected": f"No {i}."}
        if i % 97 == 5:
            record["chosen"] = " "  # invalid: empty text
        lines.append(json.dumps(record))
        if i % 50 == 0:
            lines.append("")  # blank lines shift line numbers
    lines[150] = "{broken"
    path = tmp_path / "pairs.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.mark.parametrize("split", [0.0, 0.2])
def test_sharded_and_sequential_reports_are_identical(split: float, tmp_path: Path, monkeypatch) -> None:
    data = _file(tmp_path)
    policy = {"method": "dpo", "drop_invalid": True, "max_invalid_fraction": 0.5, "eval_split": split}
    sequential = _run(data, tmp_path / "a", False, monkeypatch, **policy)
    sharded = _run(data, tmp_path / "b", True, monkeypatch, **policy)
    assert sequential.refused is None and sharded.refused is None
    assert _comparable(sharded) == _comparable(sequential)
    assert sharded.files[0].duplicate_prompts["count"] >= 45  # repeats across shard boundaries are found
    for side in ("train", "eval"):
        a, b = tmp_path / "a" / f"{side}.jsonl", tmp_path / "b" / f"{side}.jsonl"
        assert a.exists() == b.exists() and (not a.exists() or a.read_bytes() == b.read_bytes())
    assert not list((tmp_path / "b").glob("shard-*"))


def test_sharded_eval_file_is_checked_against_every_training_record(tmp_path: Path, monkeypatch) -> None:
    train = tmp_path / "train.jsonl"
    train.write_text("".join(json.dumps({"text": f"row {i}"}) + "\n" for i in range(200)))
    evaluation = tmp_path / "eval.jsonl"
    evaluation.write_text("".join(json.dumps({"text": f"ROW {i * 7}"}) + "\n" for i in range(40)))
    result = _run(train, tmp_path / "o", True, monkeypatch, method="sft", evaluation=evaluation)
    leakage = result.files[1].leakage
    assert result.refused and leakage["normalized"] == 29 and leakage["exact"] == 0


def test_a_mixed_file_falls_back_to_the_sequential_pass(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "mixed.jsonl"
    path.write_text("".join(json.dumps({"text": f"t{i}"}) + "\n" for i in range(30))
                    + "".join(json.dumps({"prompt": f"p{i}", "completion": "c"}) + "\n" for i in range(30)))  # fmt: skip
    sharded = _run(path, tmp_path / "b", True, monkeypatch, method="sft")
    sequential = _run(path, tmp_path / "a", False, monkeypatch, method="sft")
    assert _comparable(sharded) == _comparable(sequential)
    assert sharded.files[0].errors[0]["line"] == 31


def test_ranges_start_at_line_starts_and_cover_the_file(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_bytes(b"".join(b'{"text": "%d"}\n' % i for i in range(1000)))
    ranges = shards.shard_ranges(path, 4)
    assert ranges[0][0] == 0 and ranges[-1][1] == path.stat().st_size
    content = path.read_bytes()
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert end == start and content[start - 1 : start] == b"\n"
