"""The catalog of TRL's settings, generated from its dataclasses and read without importing TRL.

Importing TRL costs ~8 s here, and `--help` and `validate` must stay fast, so the field names, types,
defaults and help texts of every registered method's TRL config (jobs/methods/) and of `ModelConfig`
are extracted once into `settings_catalog.json` (`make catalog`). A test regenerates it and fails when
it is stale, so it always describes the pinned TRL and the registered methods.

Groups: `training` (fields every method's config has, alike), one group per method (the rest of its
config), and `model`. Each field is described by a `FieldSpec` dict: `kind` (bool, int, float, str,
choice, list, json), `optional`, `choices` (for choice), `item` (for list), `default` and `help`.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import types
import typing
from functools import cache
from pathlib import Path
from typing import Any

from jobs.methods import METHODS

CATALOG_PATH = Path(__file__).with_name("settings_catalog.json")

FieldSpec = dict[str, Any]


_SCALARS: dict[Any, str] = {bool: "bool", int: "int", float: "float", str: "str"}


def _scalar_kind(tp: Any) -> FieldSpec | None:
    if tp in _SCALARS:
        return {"kind": _SCALARS[tp]}
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return {"kind": "choice", "choices": [str(member.value) for member in tp]}
    if typing.get_origin(tp) is typing.Literal:
        return {"kind": "choice", "choices": [str(v) for v in typing.get_args(tp) if v is not False]}
    return None


def _describe_type(tp: Any) -> FieldSpec | None:
    """Map a dataclass field type to a FieldSpec kind, or None when env vars cannot express it."""
    origin = typing.get_origin(tp)
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    optional = type(None) in typing.get_args(tp)
    if origin is list:
        item = _scalar_kind(args[0]) if args else {"kind": "str"}
        return {"kind": "list", "item": (item or {"kind": "str"})["kind"], "optional": optional}
    if origin is dict or tp is dict:
        return {"kind": "json", "optional": optional}
    if origin in (typing.Union, types.UnionType):
        return _describe_union(args, optional)
    spec = _scalar_kind(tp)
    return None if spec is None else {**spec, "optional": optional}


def _describe_union(args: list[Any], optional: bool) -> FieldSpec | None:
    kinds = [_describe_type(a) for a in args]
    known = [k for k in kinds if k is not None]
    if not known:
        return None
    names = {k["kind"] for k in known}
    if "json" in names:  # dict | str: a JSON object, or a path that TRL/transformers loads itself
        return {"kind": "json", "optional": optional}
    if "choice" in names:  # Enum | str: transformers converts the string to the enum and rejects others
        return {**next(k for k in known if k["kind"] == "choice"), "optional": optional}
    if "list" in names:  # str | list[str]: a comma-separated list covers both
        return {**next(k for k in known if k["kind"] == "list"), "optional": optional}
    # Scalars such as `int | str` ('auto' or 64): the first kind that parses the value wins, in this order.
    order = [kind for kind in ("bool", "int", "float", "str") if kind in names]
    if len(order) == 1:
        return {"kind": order[0], "optional": optional}
    return {"kind": "union", "kinds": order, "optional": optional}


def _default_of(field: dataclasses.Field[Any]) -> Any:
    if field.default is not dataclasses.MISSING:
        value = field.default
    elif field.default_factory is not dataclasses.MISSING:
        value = field.default_factory()
    else:
        return None
    if isinstance(value, enum.Enum):
        return value.value
    try:
        json.dumps(value)
    except TypeError:
        return str(value)
    return value


def describe_dataclass(cls: type) -> dict[str, FieldSpec]:
    hints = typing.get_type_hints(cls)
    described: dict[str, FieldSpec] = {}
    for field in dataclasses.fields(cls):
        if not field.init or field.name.startswith("_"):
            continue
        spec = _describe_type(hints[field.name])
        if "values" in field.metadata and spec and spec["kind"] == "list":  # a list of the job's known values
            spec = {**spec, "choices": list(field.metadata["values"])}
        elif "values" in field.metadata:  # a str field of the job whose values are known only at run time
            spec = {
                "kind": "choice",
                "choices": list(field.metadata["values"]),
                "optional": False,
            }
        if spec is None:
            continue
        help_text = " ".join(str(field.metadata.get("help", "")).split())
        limits = {key: field.metadata[key] for key in ("min", "max") if key in field.metadata}
        described[field.name] = {**spec, **limits, "default": _default_of(field), "help": help_text}
    return described


def build_catalog() -> dict[str, dict[str, FieldSpec]]:
    """Describe TRL's config classes (imports TRL: slow, used by `make catalog` and its test)."""
    from trl import ModelConfig

    by_method = {name: describe_dataclass(method.config_class()) for name, method in METHODS.items()}
    first, *others = by_method.values()
    shared = {name: spec for name, spec in first.items() if all(other.get(name) == spec for other in others)}
    return {
        "training": shared,
        **{name: {k: v for k, v in fields.items() if k not in shared} for name, fields in by_method.items()},
        "model": describe_dataclass(ModelConfig),
    }


@cache
def load_catalog() -> dict[str, dict[str, FieldSpec]]:
    """The committed catalog (cheap: no TRL import)."""
    return json.loads(CATALOG_PATH.read_text(encoding="utf-8"))


def write_catalog() -> None:
    catalog = build_catalog()
    CATALOG_PATH.write_text(json.dumps(catalog, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    write_catalog()
