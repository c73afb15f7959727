"""Every dataset shape TRL's documentation shows validates for the methods that train on it (tests/data/
trl_docs/): plain and conversational language modeling, prompt-completion, preference with an explicit or
implicit prompt, unpaired preference, tool calling (assistant turns with tool_calls and no content, tool
turns with a name, a `tools` column of function schemas), Harmony (developer turns, `thinking`) and
content as typed parts."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from dev.testing import ROOT
from jobs.data.validate import validate_dataset
from jobs.preflight.data import data_policy

EXAMPLES = [json.loads(line) for line in (ROOT / "tests/data/trl_docs/dataset_formats.jsonl").read_text().splitlines()]
# A conversation of one user turn: TRL turns it into a prompt; for SFT it has nothing to train on.
NOTHING_TO_TRAIN_ON = {"Types > Prompt-only (TIP)"}


def _validate(tmp_path: Path, method: str, records: list[dict[str, Any]]) -> Any:
    data = tmp_path / f"{method}.jsonl"
    data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return validate_dataset(data, None, data_policy(method), tmp_path / f"prepared-{method}")


def _cases() -> list[Any]:
    cases = []
    for number, example in enumerate(EXAMPLES, start=1):
        for method in example["methods"] or ["sft", "dpo", "kto"]:
            case_id = f"{number}-{example['shape']}-{method}"
            cases.append(pytest.param(example, method, id=case_id))
    return cases


@pytest.mark.parametrize(("example", "method"), _cases())
def test_every_documented_shape_validates_for_the_methods_that_take_it(
    example: dict[str, Any], method: str, tmp_path: Path
) -> None:
    result = _validate(tmp_path, method, [example["record"]])
    if example["methods"] and example["section"] not in NOTHING_TO_TRAIN_ON:
        assert result.refused is None, (result.refused, result.problems)
        [report] = result.files
        assert report.valid == 1 and not report.warnings, report.warnings
    else:  # prompt-only and stepwise data: no method of this job trains on them, and the refusal says what it is
        assert result.refused is not None
        assert "unknown format" in " ".join(result.problems) or "no assistant turn" in " ".join(result.problems)


def test_tool_calls_and_tools_reach_training_as_trl_reads_them(tmp_path: Path) -> None:
    [example] = [e for e in EXAMPLES if e["section"] == "Formats > Tool Calling" and "tools" in e["record"]]
    result = _validate(tmp_path, "sft", [example["record"]])
    assert result.refused is None, result.problems
    [prepared] = [json.loads(line) for line in (tmp_path / "prepared-sft" / "train.jsonl").read_text().splitlines()]
    call = prepared["messages"][1]
    assert call["tool_calls"][0]["function"]["name"] == "control_light" and call["content"] is None
    assert prepared["messages"][2]["name"] == "control_light"
    assert json.loads(prepared["tools"]) == example["record"]["tools"]  # JSON text: one Arrow type for all rows


@pytest.mark.parametrize(
    ("record", "path", "message"),
    [
        pytest.param({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo",
                                                                        "mood": "happy"}]},
                     "/messages/1/mood", "a message key outside the schema", id="unknown-key-warns"),
        pytest.param({"messages": [{"role": "user", "content": "lights"},
                                   {"role": "assistant", "tool_calls": [{"type": "function", "function": {
                                       "name": "dim", "arguments": {}}}]},
                                   {"role": "tool", "name": "dim", "content": "ok"},
                                   {"role": "assistant", "content": "Done."}],
                      "tools": [{"type": "function", "function": {"name": "control_light"}}]},
                     "/messages/1/tool_calls/0/function/name", "a tool call to a function not in tools",
                     id="call-to-an-unoffered-function-warns"),
    ],
)  # fmt: skip
def test_what_templates_ignore_is_a_warning_with_its_line_never_an_error(
    record: dict[str, Any], path: str, message: str, tmp_path: Path
) -> None:
    result = _validate(tmp_path, "sft", [record])
    assert result.refused is None, result.problems
    [report] = result.files
    [(text, entry)] = report.warnings.items()
    assert text.startswith(message) and entry["examples"] == [{"line": 1, "path": path}]


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant"}]},
                     '/messages/1: "content" is missing', id="no-content-without-tool-calls"),
        pytest.param({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "tool_calls": [
            {"type": "function", "function": {"arguments": "{}"}}]}, {"role": "tool", "content": "x"},
            {"role": "assistant", "content": "ok"}]}, '/messages/1/tool_calls/0/function: "name" is missing',
                     id="tool-call-without-a-name"),
        pytest.param({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}],
                      "tools": "[{\"type\": \"function\"}"}, "/tools: tools is text but not JSON",
                     id="tools-text-not-json"),
        pytest.param({"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}],
                      "tools": [{"name": "f"}]}, '/tools/0: "type" is missing', id="tools-not-function-schemas"),
        pytest.param({"messages": [{"role": "user", "content": "hi"}, {"role": "developer", "content": "x"},
                                   {"role": "assistant", "content": "ok"}]},
                     "/messages/1/role: roles out of order: 'developer' here; a developer turn can only come first",
                     id="developer-not-first"),
    ],
)  # fmt: skip
def test_malformed_tool_and_harmony_records_are_errors_at_their_path(
    record: dict[str, Any], expected: str, tmp_path: Path
) -> None:
    result = _validate(tmp_path, "sft", [record])
    assert result.refused is not None
    assert any(f":1 {expected}" in problem for problem in result.problems), result.problems
