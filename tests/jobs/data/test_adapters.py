"""Adapters: each known third-party shape becomes a native record, recognised by its keys."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.data.adapters import ADAPTERS, detect_adapter, parse_hh_transcript


@pytest.mark.parametrize(
    ("record", "adapter", "expected"),
    [
        pytest.param(
            {"instruction": "Add", "input": "2 and 3", "output": "5", "system": "Be brief",
             "history": [["Hi", "Hello"]]},
            "alpaca",
            {"messages": [{"role": "system", "content": "Be brief"}, {"role": "user", "content": "Hi"},
                          {"role": "assistant", "content": "Hello"}, {"role": "user", "content": "Add\n\n2 and 3"},
                          {"role": "assistant", "content": "5"}]},
            id="alpaca",
        ),
        pytest.param(
            {"conversations": [{"from": "human", "value": "q"}, {"from": "gpt", "value": "a"}], "system": "s"},
            "sharegpt",
            {"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": "q"},
                          {"role": "assistant", "content": "a"}]},
            id="sharegpt",
        ),
        pytest.param(
            {"conversations": [{"from": "human", "value": "q"}], "chosen": {"from": "gpt", "value": "good"},
             "rejected": {"from": "gpt", "value": "bad"}},
            "sharegpt_preference",
            {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
             "rejected": [{"role": "assistant", "content": "bad"}]},
            id="sharegpt-preference",
        ),
        pytest.param(
            {"input": {"messages": [{"role": "user", "content": "q"}]},
             "preferred_output": [{"role": "assistant", "content": "good"}],
             "non_preferred_output": [{"role": "assistant", "content": "bad"}]},
            "openai_preference",
            {"prompt": [{"role": "user", "content": "q"}], "chosen": [{"role": "assistant", "content": "good"}],
             "rejected": [{"role": "assistant", "content": "bad"}]},
            id="openai-preference",
        ),
        pytest.param(
            {"chosen": "\n\nHuman: hi\n\nAssistant: hello", "rejected": "\n\nHuman: hi\n\nAssistant: go away"},
            "hh_rlhf",
            {"chosen": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}],
             "rejected": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "go away"}]},
            id="hh-rlhf",
        ),
        pytest.param(
            {"chosen_messages": [{"role": "user", "content": [{"type": "text", "value": "q"}], "loss_weight": 0.0},
                                 {"role": "assistant", "content": [{"type": "text", "value": "a"}]}],
             "rejected_messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]},
            "llamafactory_preference",
            {"chosen": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}],
             "rejected": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "b"}]},
            id="llamafactory-v1",
        ),
    ],
)  # fmt: skip
def test_adapters_convert_to_native_records(record: dict[str, Any], adapter: str, expected: dict[str, Any]) -> None:
    detected = detect_adapter(record)
    assert detected is ADAPTERS[adapter]
    assert detected.convert(record) == expected


def test_native_records_need_no_adapter() -> None:
    assert detect_adapter({"chosen": "plain text", "rejected": "other"}) is None
    assert detect_adapter({"messages": []}) is None


def test_hh_transcript_keeps_empty_turns_for_the_semantic_check() -> None:
    turns = parse_hh_transcript("\n\nHuman: hi\n\nAssistant: ")
    assert turns == [{"role": "user", "content": "hi"}, {"role": "assistant", "content": ""}]


def test_unknown_sharegpt_speakers_pass_through_for_the_schema_to_name() -> None:
    converted = ADAPTERS["sharegpt"].convert({"conversations": [{"from": "narrator", "value": "x"}]})
    assert converted["messages"][0]["role"] == "narrator"
