"""The accepted data formats, their JSON Schemas (schemas/), and how a record's format is recognised.

Each format has one schema file. Validation has a fast path (a compiled Rust validator answers
valid/invalid) and a precise path for the few records that fail (the reference `jsonschema` library
lists every violation with its JSON-pointer path).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

SCHEMA_DIR = Path(__file__).resolve().parent.parent.parent / "schemas"
_SHARED_DEFS = "conversation.defs.json"


@dataclass(frozen=True)
class Format:
    """One schema file: its dataset kind (TRL's vocabulary) and the fields a record of it has."""

    name: str
    kind: str
    fields: tuple[str, ...]
    conversational: bool
    title: str
    optional: tuple[str, ...] = ()  # columns a record may add, such as `tools`
    texts: tuple[str, ...] = ()  # the fields that hold one text (a plain format's; not a label)
    flags: tuple[str, ...] = ()  # the fields that hold true or false (a label)


def _load_formats() -> dict[str, Format]:
    """Every `schemas/<name>.schema.json`: adding a format is adding its schema (with `x-trainjob`)."""
    formats = {}
    for path in sorted(SCHEMA_DIR.glob("*.schema.json")):
        schema = json.loads(path.read_text(encoding="utf-8"))
        meta = schema["x-trainjob"]
        name = path.name.removesuffix(".schema.json")
        optional = tuple(key for key in schema["properties"] if key not in schema["required"])
        properties = [(key, schema["properties"][key]) for key in schema["required"]]
        texts = tuple(key for key, rule in properties if rule.get("$ref", "").endswith("/$defs/text"))
        flags = tuple(key for key, rule in properties if rule.get("type") == "boolean")
        formats[name] = Format(
            name, meta["kind"], tuple(schema["required"]), meta["conversational"], schema["title"], optional, texts,
            flags,
        )  # fmt: skip
    return formats


def _message_keys() -> tuple[str, ...]:
    """The keys a chat message may carry (conversation.defs.json); others are warned about and dropped."""
    shared = json.loads((SCHEMA_DIR / _SHARED_DEFS).read_text(encoding="utf-8"))
    return tuple(shared["$defs"]["message"]["properties"])


MESSAGE_KEYS = _message_keys()


@cache
def _tool_list_validator() -> Any:
    import jsonschema_rs

    shared = json.loads((SCHEMA_DIR / _SHARED_DEFS).read_text(encoding="utf-8"))
    return jsonschema_rs.validator_for({"type": "array", "items": shared["$defs"]["tool"]})


def is_tool_list(value: Any) -> bool:
    """Whether `value` is a list of function schemas (the parsed JSON text of a `tools` column)."""
    return bool(_tool_list_validator().is_valid(value))


FORMATS: dict[str, Format] = _load_formats()

# Formats sharing their required fields form a family; plain vs conversational is decided by whether the
# family's first field holds a list (of messages). Larger key sets are more specific, so they are tried first.
_FAMILIES: dict[frozenset[str], dict[bool, str]] = {}
for _format in FORMATS.values():
    _FAMILIES.setdefault(frozenset(_format.fields), {})[_format.conversational] = _format.name
_DETECTION_ORDER = sorted(_FAMILIES, key=lambda keys: (-len(keys), sorted(keys)))


def native_format(record: dict[str, Any]) -> str | None:
    """The native format a record's keys and value types point to, or None."""
    keys = record.keys()
    for required in _DETECTION_ORDER:
        if required <= keys:
            family = _FAMILIES[required]
            first = FORMATS[next(iter(family.values()))].fields[0]
            conversational = isinstance(record[first], list)
            return family.get(conversational) or next(iter(family.values()))
    return None


def _inline_shared_defs(schema: dict[str, Any], shared: dict[str, Any]) -> dict[str, Any]:
    """Make a schema self-contained: refs into the shared defs file become local `#/$defs/...` refs."""
    text = json.dumps(schema).replace(f'"{_SHARED_DEFS}#/$defs/', '"#/$defs/')
    inlined = json.loads(text)
    inlined["$defs"] = {**shared["$defs"], **inlined.get("$defs", {})}
    return inlined


@cache
def load_schema(name: str) -> dict[str, Any]:
    shared = json.loads((SCHEMA_DIR / _SHARED_DEFS).read_text(encoding="utf-8"))
    schema = json.loads((SCHEMA_DIR / f"{name}.schema.json").read_text(encoding="utf-8"))
    return _inline_shared_defs(schema, shared)


_PLAIN_SCHEMA_KEYS = {"$schema", "$id", "title", "description", "x-trainjob", "type", "required", "properties", "$defs"}


def _only(rule: dict[str, Any], kind: str) -> bool:
    return set(rule) <= {"type", "description"} and rule.get("type") == kind


@cache
def checked_from_line(fmt: Format) -> bool:
    """Whether a record's line alone decides its schema (scan.plain): a plain format whose every field is a
    text (a string, nothing more) or a flag (true or false), nothing optional and no other rule."""
    schema = load_schema(fmt.name)
    return (
        not fmt.conversational
        and not fmt.optional
        and set(fmt.texts + fmt.flags) == set(fmt.fields)
        and set(schema) <= _PLAIN_SCHEMA_KEYS
        and _only(schema["$defs"]["text"], "string")
        and all(_only(schema["properties"][name], "boolean") for name in fmt.flags)
    )


class SchemaChecker:
    """Fast valid/invalid answers, and precise messages on demand, for one format."""

    def __init__(self, format_name: str) -> None:
        import jsonschema_rs

        self.schema = load_schema(format_name)
        self.is_valid = jsonschema_rs.validator_for(self.schema).is_valid
        self._precise: Any = None

    def violations(self, record: Any) -> list[tuple[str, str]]:
        """Every violation as (JSON pointer, message), most specific first."""
        if self._precise is None:
            from jsonschema import Draft202012Validator

            self._precise = Draft202012Validator(self.schema)
        errors = [_explain(e) for e in self._precise.iter_errors(record)]
        found = []
        for error in sorted(errors, key=lambda e: (-len(e.absolute_path), e.message)):
            pointer = "".join(f"/{part}" for part in error.absolute_path) or "/"
            found.append((pointer, _describe(error)))
        return found


def _explain(error: Any) -> Any:
    """An anyOf failure is explained by the branch whose type matched (e.g. the array branch for a list)."""
    deeper = [e for e in error.context or [] if e.validator != "type"]
    if not deeper:
        return error  # every branch rejected the value's type: _describe lists the accepted ones
    return _explain(max(deeper, key=lambda e: len(e.absolute_path)))


def _describe(error: Any) -> str:
    """jsonschema's message, with anyOf/if-then failures explained by their most relevant cause."""
    if error.validator == "anyOf" and error.context:
        kinds = sorted({str(sub.schema.get("type", "?")) for sub in error.context if "type" in sub.schema})
        return f"{_short(error.instance)} is not one of the accepted shapes ({', '.join(kinds)})"
    if error.validator == "required":
        return error.message.replace("is a required property", "is missing (a required field)")
    return error.message


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
