"""The TRAIN_* variable reference, generated from the same field metadata the parser uses."""

from __future__ import annotations

import textwrap

from jobs.catalog import FieldSpec, load_catalog
from jobs.config import DEVICE_DEPENDENT_DEFAULTS, PREFIX, SAFE_TRAINING_DEFAULTS, job_fields

SECTIONS = (
    ("job", "The job's own settings"),
    ("model", "Model, LoRA and quantization (TRL ModelConfig)"),
    ("training", "Training, both methods (TRL SFTConfig / DPOConfig)"),
    ("sft", "SFT only (TRL SFTConfig)"),
    ("dpo", "DPO only (TRL DPOConfig)"),
)


def type_label(spec: FieldSpec) -> str:
    kind = spec["kind"]
    if kind == "choice":
        label = "one of " + "|".join(spec["choices"])
    elif kind == "list":
        label = f"list of {spec['item']} (comma-separated or JSON)"
    elif kind == "json":
        label = "JSON object or file path"
    elif kind == "union":
        label = " or ".join(spec["kinds"])
    else:
        label = kind
    return label + (", empty for none" if spec.get("optional") else "")


def default_label(name: str, spec: FieldSpec, group: str) -> str:
    if group != "job" and name in DEVICE_DEPENDENT_DEFAULTS:
        return f"{DEVICE_DEPENDENT_DEFAULTS[name]} (job default; TRL: {spec['default']!r})"
    if group in ("training", "sft", "dpo") and name in SAFE_TRAINING_DEFAULTS:
        return f"{SAFE_TRAINING_DEFAULTS[name]!r} (job default; TRL: {spec['default']!r})"
    return repr(spec["default"])


def render_reference(width: int = 100) -> str:
    sections = {"job": job_fields(), **load_catalog()}
    out: list[str] = []
    for group, title in SECTIONS:
        out.append(f"\n{title}:")
        for name, spec in sorted(sections[group].items()):
            out.append(f"  {PREFIX}{name.upper()}  [{type_label(spec)}]  default: {default_label(name, spec, group)}")
            if spec.get("help"):
                out.extend(textwrap.wrap(spec["help"], width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(out) + "\n"
