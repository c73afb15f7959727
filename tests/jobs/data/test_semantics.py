"""Semantic checks beyond the schema, as a table of records a user would recognise."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from jobs.data.formats import FORMATS
from jobs.data.semantics import TEXT_CHECKS, check_record, hygiene


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


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        pytest.param("plain ascii", [], id="clean"),
        pytest.param("naïve café “quoted”", [], id="ordinary-unicode"),
        pytest.param("bell\x07", ["control"], id="c0-control"),
        pytest.param("mis\u0093decoded", ["control"], id="c1-control"),
        pytest.param("glyph \ue001", ["private_use"], id="private-use"),
        pytest.param("caf\ufffd au lait", ["replacement"], id="replacement"),
        pytest.param("user \u202ecod.exe", ["bidi"], id="bidi-override"),
        pytest.param("isolate \u2066x\u2069", ["bidi"], id="bidi-isolate"),
        pytest.param("pass\u200bword", ["zero_width"], id="zero-width-space"),
        pytest.param("Wo\u200drd", ["zero_width"], id="zwj-in-latin"),
        pytest.param("\u200bleading only", [], id="zero-width-not-inside-a-word"),
        pytest.param("\u0645\u06cc\u200c\u0631\u0648\u062f", [], id="persian-zwnj-is-spelling"),
        pytest.param("\U0001f468\u200d\U0001f469\u200d\U0001f467", [], id="emoji-zwj-sequence"),
        pytest.param("his fianc\u00c3\u00a9e", ["mojibake"], id="mojibake-latin1"),
        pytest.param("don\u00e2\u20ac\u2122t", ["mojibake"], id="mojibake-cp1252"),
        pytest.param("an alien\u00e2\u0080\u0094it", ["control", "mojibake"], id="mojibake-c1"),
        pytest.param("S\u00e3o Paulo, \u00c0 la carte, \u00a3 5", [], id="latin-1-letters-are-not-mojibake"),
        pytest.param("caf\u00c3", [], id="a-lone-lead-is-not-mojibake"),
    ],
)
def test_character_hygiene_warnings(text: str, kinds: list[str]) -> None:
    record = {"text": text}
    findings = hygiene(record, FORMATS["text"], orjson.dumps(record))
    by_message = {message: kind for kind, message in TEXT_CHECKS.items()}
    assert [by_message[f.message] for f in findings] == kinds
    assert all(f.warning and f.path == "/text" for f in findings)


def test_text_errors_make_the_named_kinds_errors() -> None:
    record = {"text": "caf\ufffd \u202e"}
    findings = hygiene(record, FORMATS["text"], orjson.dumps(record), frozenset({"bidi"}))
    assert sorted((f.message.split(" ")[0], f.warning) for f in findings) == [
        ("U+FFFD", True),
        ("bidirectional", False),
    ]
