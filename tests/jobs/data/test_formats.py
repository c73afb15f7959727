"""The data contract's schemas: valid Draft 2020-12, one per format, and the format each record points to."""

from __future__ import annotations

from typing import Any

import jsonschema
import pytest

from jobs.config.settings import DATA_FORMATS, job_fields
from jobs.data.adapters import ADAPTERS
from jobs.data.formats import FORMATS, SCHEMA_DIR, SchemaChecker, load_schema, native_format


@pytest.mark.parametrize("name", sorted(FORMATS))
def test_every_format_has_a_valid_2020_12_schema(name: str) -> None:
    schema = load_schema(name)
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert (SCHEMA_DIR / f"{name}.schema.json").is_file()
    assert schema["x-trainjob"]["kind"] in {"language_modeling", "prompt_completion", "preference",
                                            "unpaired_preference"}  # TRL's dataset types  # fmt: skip
    assert FORMATS[name].fields == tuple(schema["required"])


def test_the_data_format_setting_lists_every_format_and_adapter() -> None:
    assert set(DATA_FORMATS) == {"auto", *FORMATS, *ADAPTERS}
    assert job_fields()["data_format"]["choices"] == list(DATA_FORMATS)


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param({"text": "t"}, "text", id="text"),
        pytest.param({"messages": []}, "messages", id="messages"),
        pytest.param({"prompt": "p", "completion": "c"}, "prompt_completion", id="prompt-completion"),
        pytest.param({"prompt": [], "completion": []}, "conversational_prompt_completion", id="conv-prompt-completion"),
        pytest.param({"prompt": "p", "chosen": "c", "rejected": "r"}, "preference", id="preference"),
        pytest.param({"prompt": [], "chosen": [], "rejected": []}, "conversational_preference", id="conv-preference"),
        pytest.param({"chosen": "c", "rejected": "r"}, "implicit_preference", id="implicit"),
        pytest.param({"chosen": [], "rejected": []}, "conversational_implicit_preference", id="conv-implicit"),
        pytest.param({"question": "q"}, None, id="unknown"),
    ],
)
def test_native_format_from_keys_and_value_types(record: dict[str, Any], expected: str | None) -> None:
    assert native_format(record) == expected


@pytest.mark.parametrize(
    ("record", "pointer", "fragment"),
    [
        pytest.param({"messages": [{"role": "user"}]}, "/messages/0", '"content" is missing', id="missing-content"),
        pytest.param({"messages": [{"role": "user", "content": 5}]}, "/messages/0/content", "accepted shapes",
                     id="content-type"),
        pytest.param({"messages": [{"role": "user", "content": [{"type": "text"}]}]}, "/messages/0/content/0",
                     '"text" is missing', id="text-part-without-text"),
        pytest.param({"messages": []}, "/messages", "should be non-empty", id="empty-conversation"),
        pytest.param({"messages": [{"role": "assistant", "content": None}]}, "/messages/0/content",
                     'null is not of types "string", "array"', id="null-content-without-tool-calls"),
    ],
)  # fmt: skip
def test_precise_violations_carry_json_pointers(record: dict[str, Any], pointer: str, fragment: str) -> None:
    checker = SchemaChecker("messages")
    assert not checker.is_valid(record)
    violations = checker.violations(record)
    assert any(p == pointer and fragment in m for p, m in violations), violations


def test_tool_calls_and_content_parts_are_valid() -> None:
    checker = SchemaChecker("messages")
    record = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "text": "weather?"}]},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [{"id": "1", "type": "function", "function": {"name": "weather", "arguments": "{}"}}],
            },
            {"role": "tool", "content": "sunny", "tool_call_id": "1"},
            {"role": "assistant", "content": "Sunny."},
        ]
    }
    assert checker.is_valid(record) and checker.violations(record) == []
