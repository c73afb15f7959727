"""The accepted data formats, their JSON Schemas (schemas/), and how a record's format is recognised.

Each format has one schema file, checked by jsonschema-rs: valid or invalid for every record, and
every violation with its JSON-pointer path for the few that fail.
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
        formats[name] = Format(
            name, meta["kind"], tuple(schema["required"]), meta["conversational"], schema["title"], optional, texts
        )
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


class SchemaChecker:
    """Valid/invalid answers, and every violation on demand, for one format (jsonschema-rs, compiled once)."""

    def __init__(self, format_name: str) -> None:
        import jsonschema_rs

        self.schema = load_schema(format_name)
        self._validator = jsonschema_rs.validator_for(self.schema)
        self.is_valid = self._validator.is_valid

    def violations(self, record: Any) -> list[tuple[str, str]]:
        """Every violation as (JSON pointer, message), most specific first."""
        try:
            errors = [_explain(e) for e in self._validator.iter_errors(record)]
        except ValueError:  # the library stops converting a record nested too deeply to describe it
            depth, pointer = deepest(record)
            return [(pointer, f"nested {depth} levels deep, too deep to check; a record holds text, not structure "
                              "this deep")]  # fmt: skip
        found = []
        for error in sorted(errors, key=lambda e: (-len(e.instance_path), e.message)):
            found.append((_pointer(error.instance_path), _describe(error)))
        return found


_POINTER_PARTS_SHOWN = 8


def deepest(value: Any) -> tuple[int, str]:
    """How many levels of arrays and objects a JSON value nests, and the JSON pointer of its deepest one
    (its first parts, where the nesting starts, when it is long)."""
    best, best_path = 0, "/"
    todo: list[tuple[Any, int, tuple[Any, ...]]] = [(value, 0, ())]
    while todo:
        item, depth, path = todo.pop()
        children = item.items() if isinstance(item, dict) else enumerate(item) if isinstance(item, list) else None
        if children is None:
            continue
        if depth + 1 > best:
            shown = path[:_POINTER_PARTS_SHOWN]
            best, best_path = depth + 1, _pointer(shown) + ("/..." if len(path) > len(shown) else "")
        todo.extend((child, depth + 1, (*path, key)) for key, child in children)
    return best, best_path


def _pointer(parts: Any) -> str:
    return "".join(f"/{part}" for part in parts) or "/"


def _branches(error: Any) -> list[Any]:
    """The errors of every branch of an anyOf/oneOf failure, flattened; [] for other errors."""
    return [sub for branch in getattr(error.kind, "context", None) or [] for sub in branch]


def _explain(error: Any) -> Any:
    """An anyOf failure is explained by the branch whose type matched (e.g. the array branch for a list)."""
    deeper = [e for e in _branches(error) if type(e.kind).__name__ != "Type"]
    if not deeper:
        return error  # every branch rejected the value's type: _describe lists the accepted ones
    return _explain(max(deeper, key=lambda e: len(e.instance_path)))


def _describe(error: Any) -> str:
    """The library's message, with anyOf failures explained by their most relevant cause."""
    kind = type(error.kind).__name__
    if kind == "AnyOf" and _branches(error):
        kinds = sorted({name for sub in _branches(error) for name in getattr(sub.kind, "types", ())})
        return f"{_short(error.instance)} is not one of the accepted shapes ({', '.join(kinds)})"
    if kind == "Required":
        return error.message.replace("is a required property", "is missing (a required field)")
    if kind == "Enum":
        return f"{_short(error.instance)} is not one of {', '.join(json.dumps(o) for o in error.kind.options)}"
    if kind == "MinItems" and error.kind.limit == 1:
        return f"{_short(error.instance)} should be non-empty"
    return error.message


def _short(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= 60 else text[:57] + "..."
