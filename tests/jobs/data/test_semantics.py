"""Semantic checks beyond the schema, as a table of records a user would recognise."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.data.formats import FORMATS
from jobs.data.semantics import check_record


def _m(*turns: tuple[str, str]) -> list[dict[str, str]]:
    return [{"role": role, "content": content} for role, content in turns]


@pytest.mark.parametrize(
    ("fmt", "record", "expected"),
    [
        pytest.param("messages", {"messages": _m(("system", "s"), ("user", "q"), ("assistant", "a"))}, [],
                     id="good-conversation"),
        pytest.param("messages", {"messages": _m(("user", "q"), ("system", "s"), ("assistant", "a"))},
                     [("/messages/1/role", "a system turn can only come first")], id="late-system"),
        pytest.param("messages", {"messages": _m(("user", "q"), ("tool", "t"), ("assistant", "a"))},
                     [("/messages/1/role", "a tool turn must follow an assistant turn")], id="tool-without-call"),
        pytest.param("messages", {"messages": _m(("user", "q"))}, [("/messages", "no assistant turn")],
                     id="no-assistant"),
        pytest.param("conversational_prompt_completion",
                     {"prompt": _m(("user", "q"), ("assistant", "a")), "completion": _m(("assistant", "b"))},
                     [("/prompt/1", "must end with a user")], id="prompt-ends-with-assistant"),
        pytest.param("conversational_prompt_completion",
                     {"prompt": _m(("user", "q")), "completion": _m(("user", "b"))},
                     [("/completion/0/role", "must be assistant")], id="completion-not-assistant"),
        pytest.param("preference", {"prompt": "p", "chosen": "A ", "rejected": " A"},
                     [("/rejected", "same as chosen")], id="same-pair"),
        pytest.param("conversational_preference",
                     {"prompt": _m(("user", "q")), "chosen": _m(("assistant", "x")),
                      "rejected": _m(("assistant", "x "))}, [("/rejected", "same as chosen")], id="same-conv-pair"),
        pytest.param("conversational_implicit_preference",
                     {"chosen": _m(("user", "q"), ("assistant", "a")), "rejected": _m(("user", "Q!"), ("assistant", "b"))},
                     [("/rejected/0", "histories differ")], id="implicit-histories-differ"),
        pytest.param("conversational_implicit_preference",
                     {"chosen": _m(("user", "q"), ("assistant", "a")), "rejected": _m(("user", "q"), ("assistant", "a"))},
                     [("/rejected", "same as chosen")], id="implicit-same"),
        pytest.param("text", {"text": "\n \t"}, [("/text", "empty or whitespace-only")], id="blank-text"),
    ],
)  # fmt: skip
def test_semantic_errors(fmt: str, record: dict[str, Any], expected: list[tuple[str, str]]) -> None:
    errors = [(f.path, f.message) for f in check_record(record, FORMATS[fmt]) if not f.warning]
    assert len(errors) == len(expected), errors
    for (path, message), (want_path, fragment) in zip(errors, expected, strict=True):
        assert path == want_path and fragment in message


def test_consecutive_turns_are_a_warning_not_an_error() -> None:
    findings = check_record(
        {"messages": _m(("user", "q"), ("assistant", "a"), ("assistant", "b"))}, FORMATS["messages"]
    )
    assert [(f.path, f.warning) for f in findings] == [("/messages/2/role", True)]
