"""The pipeline's policy: refuse or drop, one seeded split that cannot leak, leakage from a separate eval file."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from dev.testing import REALDATA, run_entrypoint, write_jsonl
from jobs.data.validate import validate_dataset
from jobs.preflight.data import data_policy

PINNED_PREPARED_SHA256 = {
    "train": "2be220605ae8a4a6c2bb5a5934e417c03d4e79806ea09ee9336eb8717dcee46f",
    "eval": "9b24e81a4a0f3bcf1b4ccf5d7418ab4663e6bef36aa011199ff92802d4fce87a",
}


def _pairs(n: int, start: int = 0) -> list[dict[str, str]]:
    return [
        {"prompt": f"Question {i}?", "chosen": f"Good answer {i}.", "rejected": f"Bad {i}."} for i in range(start, n)
    ]


def _prepared(directory: Path, side: str) -> list[dict[str, str]]:
    path = directory / f"{side}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_the_split_is_seeded_reproducible_and_keeps_near_duplicates_together(tmp_path: Path) -> None:
    records = _pairs(400)
    records += [{**r, "chosen": r["chosen"].upper() + "  "} for r in records[:50]]  # near-duplicates of 50
    data = write_jsonl(tmp_path / "d.jsonl", records)
    first = validate_dataset(data, None, data_policy("dpo", eval_split=0.2, seed=3), tmp_path / "a")
    validate_dataset(data, None, data_policy("dpo", eval_split=0.2, seed=3), tmp_path / "b")
    validate_dataset(data, None, data_policy("dpo", eval_split=0.2, seed=4), tmp_path / "c")
    assert first.refused is None
    assert _prepared(tmp_path / "a", "eval") == _prepared(tmp_path / "b", "eval")
    assert _prepared(tmp_path / "a", "eval") != _prepared(tmp_path / "c", "eval")
    assert 0.12 < first.split["eval"] / 450 < 0.28
    eval_prompts = {r["prompt"] for r in _prepared(tmp_path / "a", "eval")}
    train_prompts = {r["prompt"] for r in _prepared(tmp_path / "a", "train")}
    assert not eval_prompts & train_prompts  # a record and its near-duplicate share a side
    assert first.files[0].leakage["count"] == 0


def test_records_sharing_a_prompt_share_a_side(tmp_path: Path) -> None:
    # Several pairs for each prompt (as in UltraFeedback), and SFT conversations that differ only in the reply:
    # no prompt is both trained on and evaluated.
    pairs = [{"prompt": f"Question {i % 60}?", "chosen": f"Good {i}.", "rejected": f"Bad {i}."} for i in range(300)]
    chats = [
        {"messages": [{"role": "user", "content": f"Ask {i % 60}"}, {"role": "assistant", "content": f"Reply {i}"}]}
        for i in range(300)
    ]
    for name, records, method, prompt in (
        ("pairs", pairs, "dpo", lambda r: r["prompt"]),
        ("chats", chats, "sft", lambda r: r["messages"][0]["content"]),
    ):
        data = write_jsonl(tmp_path / f"{name}.jsonl", records)
        result = validate_dataset(data, None, data_policy(method, eval_split=0.3), tmp_path / name)
        assert result.refused is None
        sides = [{prompt(r) for r in _prepared(tmp_path / name, side)} for side in ("train", "eval")]
        assert sides[0] and sides[1] and not sides[0] & sides[1], name
    assert result.files[0].duplicate_prompts["count"] == 0  # unpaired SFT data repeats prompts by design


def test_a_separate_eval_file_that_leaks_is_refused_or_dropped(tmp_path: Path) -> None:
    train = write_jsonl(tmp_path / "train.jsonl", _pairs(50))
    leaked = [_pairs(3)[0], {**_pairs(3)[1], "prompt": "QUESTION 1?\n"}]  # exact, and after normalising
    evaluation = write_jsonl(tmp_path / "eval.jsonl", leaked + _pairs(60, start=50))
    refused = validate_dataset(train, evaluation, data_policy("dpo"), tmp_path / "p")
    leakage = refused.files[1].leakage
    assert refused.refused and (leakage["exact"], leakage["normalized"]) == (1, 1)
    assert [e["line"] for e in refused.files[1].errors] == [1, 2]
    assert not (tmp_path / "p" / "train.jsonl").exists()  # nothing half-written is left for training
    dropped = validate_dataset(train, evaluation, data_policy("dpo", drop_invalid=True, max_invalid_fraction=0.2),
                               tmp_path / "q")  # fmt: skip
    assert dropped.refused is None
    assert [d["line"] for d in dropped.files[1].dropped] == [1, 2]
    assert len(_prepared(tmp_path / "q", "eval")) == 10


def test_training_reads_exactly_the_validated_records(tmp_path: Path) -> None:
    data = tmp_path / "alpaca.json"
    data.write_text(json.dumps([{"instruction": "Say hi", "input": "", "output": "hi", "extra": 1}] * 2))
    run = run_entrypoint(
        "validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "o")
    )
    assert run.returncode == 0, run.stderr
    assert "records look like Alpaca" in run.stderr and "TRAIN_DATA_FORMAT=alpaca" in run.stderr
    prepared = (tmp_path / "o" / "data" / "train.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in prepared] == [
        {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "hi"}]}
    ] * 2


def test_a_forced_format_validates_every_record_against_it(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": "hello"}])
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=str(data), TRAIN_DATA_FORMAT="messages",
                         TRAIN_OUTPUT_DIR=str(tmp_path / "o"))  # fmt: skip
    assert run.returncode == 3
    assert 'd.jsonl:1 /: "messages" is missing' in run.messages()


def test_errors_beyond_the_shown_ones_are_counted(tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": " "}] * 30)
    result = validate_dataset(data, None, data_policy("sft", max_shown=5), tmp_path / "p")
    assert len(result.files[0].errors) == 5 and result.files[0].error_count == 30


def test_the_prepared_file_is_canonical_json_whatever_the_spelling(tmp_path: Path) -> None:
    pairs = _pairs(3)
    spellings = [
        [json.dumps(r) for r in pairs],  # Python's spacing and ASCII escapes
        [json.dumps(r, ensure_ascii=False, indent=1).replace("\n", "") for r in pairs],
        [json.dumps(dict(reversed(r.items()))) for r in pairs],  # another key order
        [json.dumps(r).replace("/", "\\/") for r in pairs],  # as PHP and pandas write slashes
    ]
    prepared = []
    for number, lines in enumerate(spellings):
        data = tmp_path / f"d{number}.jsonl"
        data.write_bytes("\r\n".join(lines).encode())  # CRLF, no newline at the end
        assert validate_dataset(data, None, data_policy("dpo"), tmp_path / f"p{number}").refused is None
        prepared.append((tmp_path / f"p{number}" / "train.jsonl").read_bytes())
    assert len(set(prepared)) == 1
    assert prepared[0].splitlines()[0] == json.dumps(pairs[0], sort_keys=True, separators=(",", ":")).encode()


def test_the_prepared_files_bytes_are_pinned_for_a_fixed_input(tmp_path: Path) -> None:
    """The same input gives the same prepared bytes on any machine: their sha256 is part of the resume
    identity. A change here changes every run's identity: say so in the README when it is meant."""
    source = REALDATA / "llamafactory_alpaca_en_demo.json"
    result = validate_dataset(source, None, data_policy("sft", eval_split=0.1, seed=42), tmp_path)
    assert result.refused is None and result.split["eval"] > 0
    digests = {
        side: hashlib.sha256((tmp_path / f"{side}.jsonl").read_bytes()).hexdigest() for side in ("train", "eval")
    }
    assert digests == PINNED_PREPARED_SHA256


def test_a_record_written_twice_in_different_spellings_is_a_duplicate(tmp_path: Path) -> None:
    record = {"prompt": 'caf\u00e9 / "quoted"\n', "chosen": "yes", "rejected": "no"}
    data = tmp_path / "d.jsonl"
    data.write_text(
        json.dumps(record) + "\n" + json.dumps(record, ensure_ascii=False, indent=1).replace("\n", "") + "\n"
    )
    result = validate_dataset(data, None, data_policy("dpo"), tmp_path / "p")
    assert result.files[0].duplicates["count"] == 1
    assert result.files[0].duplicates["examples"] == [{"line": 2, "first_line": 1}]
