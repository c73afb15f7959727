"""`validate` as a user runs it: bad inputs exit 3 (path problems 4) naming the line, with no traceback;
good variants pass; every real third-party file is reported exactly at its known defects."""

from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from dev.testing import REALDATA, run_entrypoint
from jobs.data.hygiene import TEXT_CHECKS

GOOD_SFT = {"messages": [{"role": "user", "content": "Count on from 1."}, {"role": "assistant", "content": "2 3 4"}]}
GOOD_DPO = {"prompt": "2+2?", "chosen": "4", "rejected": "5"}


def _line(record: object) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode() + b"\n"


def _sft(*records: object) -> bytes:
    return b"".join(_line(r) for r in records)


def _messages(*turns: tuple[str, str]) -> dict[str, object]:
    return {"messages": [{"role": role, "content": content} for role, content in turns]}


def _nested(depth: int, leaf: object) -> object:
    for _ in range(depth):
        leaf = {"k": leaf}
    return leaf


# Found by fuzzing: tool-call arguments that orjson parses (up to 1,024 levels) but will not write (254), and
# schema-invalid content whose description the schema library cannot build.
DEEP_ARGUMENTS = {
    "messages": [
        {"role": "user", "content": "q"},
        {
            "role": "assistant",
            "tool_calls": [{"type": "function", "function": {"name": "f", "arguments": _nested(249, "x")}}],
        },
    ]
}
DEEP_CONTENT = (b'{"messages": [{"role": "user", "content": ' + b"[" * 1000 + b'"x"' + b"]" * 1000
                + b'}, {"role": "assistant", "content": "a"}]}\n')  # fmt: skip


BAD_INPUTS = [
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT) + b'{"messages": [\n', ":2 /: not valid JSON", id="truncated-line"),
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT, {"messages": "hi"}), ':2 /messages: "hi" is not of type "array"',
                 id="wrong-type"),
    pytest.param("dpo", "t.jsonl", _sft(GOOD_DPO, {"prompt": "p", "chosen": "c"}), ":2 /: unknown format",
                 id="missing-field"),
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT) + b"null\n", ":2 /: expected a JSON object, got null", id="null"),
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT) + b'{"text": NaN}\n', ":2 /: not valid JSON", id="nan-literal"),
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT) + b'{"text": "caf\xe9"}\n', ":2 /: not valid JSON", id="invalid-utf8"),
    pytest.param("sft", "t.jsonl", b"", "holds no records", id="empty-file"),
    pytest.param("sft", "t.jsonl", b"\n\n  \n", "holds no records", id="blank-lines-only"),
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT) + b"[" * 200_000 + b"]" * 200_000 + b"\n", ":2 /: not valid JSON",
                 id="deeply-nested"),
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT, DEEP_ARGUMENTS), ":2 /messages/1/tool_calls/0/function/arguments/k/k/...: nested 255 levels deep; the prepared file's JSON holds at most 254",
                 id="deep-tool-call-arguments"),
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT) + DEEP_CONTENT, ":2 /messages/0/content/0/0/0/0/0/...: nested 1003 levels deep, too deep to check",
                 id="deep-invalid-content"),
    pytest.param("sft", "t.json", b'[{"text": "a"},\n {"text": "cut \\ud83d here"}]', "t.json:2 /: holds a lone UTF-16 surrogate",
                 id="lone-surrogate-in-json"),
    pytest.param("sft", "t.json", b'[\n  {"text": "a"},\n  {"text": "b"},\n]\n', "t.json:4: not valid JSON (an empty element",
                 id="json-trailing-comma"),
    pytest.param("sft", "t.jsonl", _sft({"question": "q", "answer": "a"}), ":1 /: unknown format (keys: answer, question)",
                 id="unknown-format"),
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT, {"text": "plain"}), ":2 /: format text differs from the data's format messages (at ",
                 id="mixed-formats"),
    pytest.param("sft", "t.jsonl", _sft(_messages(("user", "hi"), ("bot", "yo"))), ':1 /messages/1/role: "bot" is not one of "system", "developer", "user"',
                 id="bad-role"),
    pytest.param("sft", "t.jsonl", _sft(_messages(("system", "s"), ("user", "hi"))), ":1 /messages: no assistant turn",
                 id="no-assistant-turn"),
    pytest.param("sft", "t.jsonl", _sft(_messages(("assistant", "x"), ("user", "hi"))),
                 ":1 /messages/0/role: roles out of order", id="roles-out-of-order"),
    pytest.param("dpo", "t.jsonl", _sft(GOOD_DPO, {"prompt": "p", "chosen": " same ", "rejected": "same"}),
                 ":2 /rejected: rejected is the same as chosen", id="chosen-equals-rejected"),
    pytest.param("sft", "t.jsonl", _sft(GOOD_SFT, _messages(("user", "hi"), ("assistant", " \n\t"))),
                 ":2 /messages/1/content: empty assistant turn", id="whitespace-only-text"),
    pytest.param("dpo", "t.jsonl", _sft({"prompt": "", "chosen": "a", "rejected": "b"}), ":1 /prompt: empty or whitespace",
                 id="empty-text"),
    pytest.param("dpo", "t.jsonl", _sft(GOOD_SFT), "1 records of language modeling data (messages, detected at line 1), but TRAIN_METHOD=dpo trains on preference data; set TRAIN_METHOD to sft", id="wrong-method"),
    pytest.param("sft", "t.csv", b"text\nhello\n", "unsupported file type", id="unsupported-suffix"),
]  # fmt: skip


@pytest.mark.parametrize(("method", "name", "content", "expected"), BAD_INPUTS)
def test_bad_input_exits_3_naming_the_line(
    method: str, name: str, content: bytes, expected: str, tmp_path: Path
) -> None:
    data = tmp_path / name
    data.write_bytes(content)
    run = run_entrypoint(
        "validate", TRAIN_METHOD=method, TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "o")
    )
    assert run.returncode == 3, run.stderr[-2000:]
    assert expected in run.messages(), run.stderr[-2000:]
    assert "Traceback" not in run.stderr
    report = json.loads((tmp_path / "o" / "validation_report.json").read_text())
    assert report["result"] == "refused"


def _unreadable(tmp_path: Path) -> Path:
    path = tmp_path / "locked.jsonl"
    if os.geteuid() == 0:  # root reads any file: a file whose read fails with EIO stands in for it
        path.symlink_to("/proc/self/mem")
    else:
        path.write_text("{}")
        path.chmod(0)
    return path


def _empty_directory(tmp_path: Path) -> Path:
    (tmp_path / "empty" / ".cache").mkdir(parents=True)
    (tmp_path / "empty" / "README.md").write_text("# a dataset card, no data")
    return tmp_path / "empty"


@pytest.mark.parametrize(
    ("make", "expected"),
    [
        pytest.param(lambda p: p / "missing.jsonl", "does not exist", id="missing-path"),
        pytest.param(_empty_directory, "holds no data files (.jsonl, .json, .parquet", id="directory-without-data"),
        pytest.param(lambda p: p / "shards" / "*.jsonl", "matches no file", id="glob-matching-nothing"),
        pytest.param(_unreadable, "cannot be read", id="unreadable"),
    ],
)
def test_path_problems_exit_4(make, expected: str, tmp_path: Path) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=str(make(tmp_path)),
                         TRAIN_OUTPUT_DIR=str(tmp_path / "o"))  # fmt: skip
    assert run.returncode == 4, run.stderr[-2000:]
    assert expected in run.stderr
    assert "Traceback" not in run.stderr


GOOD_RECORDS = [
    GOOD_SFT,
    _messages(("user", "Сколько будет два плюс два?"), ("assistant", "Четыре 🎉")),
    _messages(("system", "你是助手"), ("user", "你好"), ("assistant", "你好！有什么可以帮你？")),
    _messages(("user", "مرحبا"), ("assistant", "أهلا وسهلا")),
]


def _good_file(tmp_path: Path, variant: str) -> Path:
    lines = [json.dumps(r, ensure_ascii=False).encode() for r in GOOD_RECORDS]
    if variant == "json-array":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(GOOD_RECORDS, ensure_ascii=False, indent=2))
    elif variant == "parquet":
        path = tmp_path / "d.parquet"
        pq.write_table(pa.Table.from_pylist(GOOD_RECORDS), path)
    elif variant == "gzip":
        path = tmp_path / "d.jsonl.gz"
        path.write_bytes(gzip.compress(b"\n".join(lines) + b"\n"))
    else:
        path = tmp_path / "d.jsonl"
        body = {
            "bom": b"\xef\xbb\xbf" + b"\n".join(lines),
            "crlf": b"\r\n".join(lines) + b"\r\n",
            "trailing-blank-lines": b"\n".join(lines) + b"\n\n\n  \n",
            "non-latin-and-emoji": b"\n".join(lines),
        }
        path.write_bytes(body[variant])  # fmt: skip
    return path


@pytest.mark.parametrize(
    "variant", ["bom", "crlf", "trailing-blank-lines", "non-latin-and-emoji", "json-array", "parquet", "gzip"]
)
def test_good_variants_pass(variant: str, tmp_path: Path) -> None:
    data = _good_file(tmp_path, variant)
    run = run_entrypoint(
        "validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "o")
    )
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "o" / "validation_report.json").read_text())
    assert report["files"][0]["valid"] == len(GOOD_RECORDS)
    prepared = (tmp_path / "o" / "data" / "train.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(line) for line in prepared] == GOOD_RECORDS


# Each real file, its method, and the errors its README lists (line, JSON pointer), nothing else.
REAL_FILES = [
    pytest.param("hh-rlhf_harmless-base_test.jsonl.gz", "dpo", "hh_rlhf",
                 {(87, "/chosen/3/content"), (517, "/chosen/1/content"), (926, "/chosen/1/content"),
                  (1104, "/chosen/1/content"), (1255, "/rejected/3"), (1689, "/rejected/3"), (1951, "/rejected/1"),
                  (1953, "/rejected/3"), (2037, "/rejected/9")}, id="hh-rlhf"),
    pytest.param("llamafactory_alpaca_en_demo.json", "sft", "alpaca", set(), id="alpaca"),
    pytest.param("foundry_orca_dpo_pairs_validation.jsonl", "dpo", "openai_preference", set(), id="orca"),
    pytest.param("foundry_gsm8k_chat_train.jsonl", "sft", None, set(), id="gsm8k"),
    pytest.param("llamafactory_v1_dpo_demo.jsonl", "dpo", "llamafactory_preference", set(), id="llamafactory-v1"),
]  # fmt: skip


@pytest.mark.parametrize(("name", "method", "adapter", "errors"), REAL_FILES)
def test_real_data_is_reported_at_its_known_defects(
    name: str, method: str, adapter: str | None, errors: set[tuple[int, str]], tmp_path: Path
) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD=method, TRAIN_DATA_PATH=str(REALDATA / name),
                         TRAIN_OUTPUT_DIR=str(tmp_path))  # fmt: skip
    assert run.returncode == (3 if errors else 0), run.stderr[-3000:]
    assert "Traceback" not in run.stderr
    file = json.loads((tmp_path / "validation_report.json").read_text())["files"][0]
    assert file["adapter"] == adapter
    assert {(e["line"], e["path"]) for e in file["errors"]} == errors
    assert file["error_count"] == len(errors)


def test_real_data_warnings_and_duplicates(tmp_path: Path) -> None:
    expectations = {  # file: (method, warning message prefix -> lines, exact duplicates)
        "hh-rlhf_harmless-base_test.jsonl.gz": ("dpo", {"private-use": [420]}, 0),
        # C1 controls, and em/en dashes and an accent read as Latin-1 ("â\x80\x94", "fianceÃ©")
        "foundry_orca_dpo_pairs_validation.jsonl": (
            "dpo",
            {"control characters": [129, 172], "mojibake": [129, 172, 188]},
            0,
        ),
        "llamafactory_alpaca_en_demo.json": ("sft", {}, 14),
    }
    for name, (method, warnings, duplicates) in expectations.items():
        out = tmp_path / name
        run_entrypoint("validate", TRAIN_METHOD=method, TRAIN_DATA_PATH=str(REALDATA / name), TRAIN_OUTPUT_DIR=str(out))
        file = json.loads((out / "validation_report.json").read_text())["files"][0]
        found = {message: [e["line"] for e in entry["examples"]] for message, entry in file["warnings"].items()}
        for prefix, lines in warnings.items():
            assert any(m.startswith(prefix) and found[m] == lines for m in found), (name, found)
        assert file["duplicates"]["count"] == duplicates


def test_a_file_of_another_methods_data_is_one_line_with_its_true_size(tmp_path: Path) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_OUTPUT_DIR=str(tmp_path),
                         TRAIN_DATA_PATH=str(REALDATA / "foundry_orca_dpo_pairs_validation.jsonl"))  # fmt: skip
    assert run.returncode == 3
    refusal = [line for line in run.stderr.splitlines() if "records of preference data" in line]
    assert len(refusal) == 1 and "foundry_orca_dpo_pairs_validation.jsonl: 284 records of preference data" in refusal[0]
    assert "set TRAIN_METHOD to dpo or kto" in refusal[0]
    report = json.loads((tmp_path / "validation_report.json").read_text())["files"][0]
    assert (report["records"], report["format"], report["adapter"]) == (
        284,
        "conversational_preference",
        "openai_preference",
    )


def test_each_record_error_is_printed_once(tmp_path: Path) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD="dpo", TRAIN_OUTPUT_DIR=str(tmp_path),
                         TRAIN_DATA_PATH=str(REALDATA / "hh-rlhf_harmless-base_test.jsonl.gz"))  # fmt: skip
    assert run.returncode == 3
    for line in (87, 517, 1255, 2037):
        assert run.stderr.count(f"hh-rlhf_harmless-base_test.jsonl.gz:{line} ") == 1, run.stderr[-3000:]


TEXT_CHECKS_BY_MESSAGE = {message: kind for kind, message in TEXT_CHECKS.items()}
HYGIENE_LINES = {  # a hand-made SFT file: each text defect on its own line, a clean line between
    "replacement": (2, "caf\ufffd au lait"),
    "bidi": (4, "run \u202etxt.exe"),
    "zero_width": (6, "pass\u200bword"),
    "mojibake": (8, "don\u00e2\u20ac\u2122t"),
}


def test_text_hygiene_is_counted_and_located_and_can_be_made_an_error(tmp_path: Path) -> None:
    records = [{"prompt": "Say something.", "completion": f"Fine {n}."} for n in range(1, 10)]
    for line, text in HYGIENE_LINES.values():
        records[line - 1]["completion"] = text
    data = tmp_path / "sft.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    warned = run_entrypoint(
        "validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "w")
    )
    assert warned.returncode == 0, warned.stderr[-3000:]
    report = json.loads((tmp_path / "w" / "validation_report.json").read_text())["files"][0]
    found = {
        TEXT_CHECKS_BY_MESSAGE[m]: [(e["line"], e["path"]) for e in w["examples"]]
        for m, w in report["warnings"].items()
    }
    assert found == {kind: [(line, "/completion")] for kind, (line, _) in HYGIENE_LINES.items()}
    strict = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "e"),
                            TRAIN_TEXT_ERRORS="bidi,mojibake")  # fmt: skip
    assert strict.returncode == 3, strict.stderr[-3000:]
    assert f"{data}:4 /completion: bidirectional control characters" in strict.stderr
    assert f"{data}:8 /completion: mojibake" in strict.stderr and f"{data}:2 /completion" not in strict.stderr


def test_drop_invalid_trains_on_the_rest_and_lists_each_dropped_record(tmp_path: Path) -> None:
    run = run_entrypoint(
        "validate", TRAIN_METHOD="dpo", TRAIN_DATA_PATH=str(REALDATA / "hh-rlhf_harmless-base_test.jsonl.gz"),
        TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_DROP_INVALID="true",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((tmp_path / "validation_report.json").read_text())
    assert [d["line"] for d in report["files"][0]["dropped"]] == [87, 517, 926, 1104, 1255, 1689, 1951, 1953, 2037]
    assert report["split"]["train"] == 2312 - 9
    refused = run_entrypoint(
        "validate", TRAIN_METHOD="dpo", TRAIN_DATA_PATH=str(REALDATA / "hh-rlhf_harmless-base_test.jsonl.gz"),
        TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_DROP_INVALID="true", TRAIN_MAX_INVALID_FRACTION="0.001",
    )  # fmt: skip
    assert refused.returncode == 3
    assert "above TRAIN_MAX_INVALID_FRACTION=0.001" in refused.stderr
