"""The TRAIN_* variable reference (`--help`), generated from the same field metadata the parser uses.

Defaults are shown as they will apply: the job's own defaults (jobs/config/defaults.py) for this machine's
device, with TRL's default beside them.
"""

from __future__ import annotations

import textwrap

from jobs.config.catalog import FieldSpec, load_catalog
from jobs.config.defaults import Device, default_for
from jobs.config.settings import PREFIX, job_fields
from jobs.methods import METHODS


def sections() -> list[tuple[str, str]]:
    """(catalog group, title): the job's settings, the model's, those of every method, then each method's own."""
    return [
        ("job", "The job's own settings"),
        ("model", "Model, LoRA and quantization (TRL ModelConfig)"),
        ("training", "Training, every method (" + " / ".join(m.trl_config for m in METHODS.values()) + ")"),
        *((name, f"{method.title}, TRAIN_METHOD={name} only") for name, method in METHODS.items()),
    ]


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


def default_label(name: str, spec: FieldSpec, group: str, device: Device) -> str:
    job_default = None if group == "job" else default_for(name, group, device)
    if job_default is None:
        return repr(spec["default"])
    value, when = job_default
    return f"{value!r} ({when}; TRL: {spec['default']!r})"


def render_reference(width: int = 100) -> str:
    catalog = {"job": job_fields(), **load_catalog()}
    device = Device.probe_cheaply()
    out: list[str] = []
    for group, title in sections():
        out.append(f"\n{title}:")
        for name, spec in sorted(catalog[group].items()):
            label = default_label(name, spec, group, device)
            out.append(f"  {PREFIX}{name.upper()}  [{type_label(spec)}]  default: {label}")
            if spec.get("help"):
                out.extend(textwrap.wrap(spec["help"], width, initial_indent=" " * 6, subsequent_indent=" " * 6))
    return "\n".join(out) + "\n"
