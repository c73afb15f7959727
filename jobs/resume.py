"""Resume only into the same run: what a checkpoint was trained with is recorded when a run starts, and a
restart that changed it is refused (exit 2) instead of silently mixing two trainings.

`<output>/run_manifest.json` holds the settings that shape the weights (the method, every TRAIN_* of the
model and the trainer except run length and cadence) and the sha256 of the prepared data; the process
count and the device are recorded too, and a change of them is only reported, since a resume across
them is legitimate (a bigger node after a preemption). TRAIN_RESUME: `auto` resumes an unchanged run and
refuses a changed one, `force` resumes anyway, `never` starts over (the old checkpoints are set aside).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

import yaml

from jobs.config import PREFIX, JobConfig, redact
from jobs.defaults import Device
from jobs.errors import ConfigError
from jobs.manifest import sha256_of

logger = logging.getLogger(__name__)

# Settings that change how long a run goes or how often it reports, not what a step does.
NOT_IDENTITY = frozenset({
    "max_steps", "num_train_epochs", "save_steps", "save_total_limit", "save_strategy", "eval_steps",
    "eval_strategy", "logging_steps", "logging_strategy", "report_to", "output_dir", "disable_tqdm",
    "hub_token", "push_to_hub", "hub_model_id", "run_name",
})  # fmt: skip


def run_identity(config: JobConfig) -> dict[str, Any]:
    """What must not change between a checkpoint and the run that resumes from it."""
    settings = {
        name: value
        for group in (config.model, config.training)
        for name, value in group.items()
        if name not in NOT_IDENTITY and name != "model_name_or_path"
    }
    layout = config.layout
    data = {"train": sha256_of(layout.train_data)}
    if layout.eval_data.is_file():
        data["eval"] = sha256_of(layout.eval_data)
    return {
        "method": config.method,
        "model": str(config.model.get("model_name_or_path")),
        "settings": redact(settings),
        "data_sha256": data,
    }


def _processes(config: JobConfig) -> int:
    if config.accelerate_config is None:
        return 1
    return int(yaml.safe_load(config.accelerate_config.read_text(encoding="utf-8")).get("num_processes", 1))


def changes(recorded: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Each difference in a form a user can act on."""
    found = []
    for key in ("method", "model"):
        if recorded.get(key) != current[key]:
            found.append(f"{key}: {recorded.get(key)!r} then, {current[key]!r} now")
    before, now = recorded.get("settings", {}), current["settings"]
    for name in sorted(set(before) | set(now)):
        if before.get(name) != now.get(name):
            then = repr(before[name]) if name in before else "unset"
            found.append(f"{PREFIX}{name.upper()}: {then} then, {repr(now[name]) if name in now else 'unset'} now")
    for role, digest in current["data_sha256"].items():
        if recorded.get("data_sha256", {}).get(role) != digest:
            found.append(f"the {role} data: its validated records differ (sha256 {digest[:12]}...)")
    return found


def check_resume(config: JobConfig) -> None:
    """Refuse a resume into a changed run, or start over, as TRAIN_RESUME says; then record this start."""
    layout = config.layout
    current = run_identity(config)
    complete = [d for _, d in layout.checkpoints() if layout.is_complete(d)]
    mode = config.job.resume
    if complete and mode == "never":
        for directory in complete:
            directory.rename(directory.with_name(f"previous-{directory.name}.{time.strftime('%Y%m%d-%H%M%S')}"))
        logger.warning("TRAIN_RESUME=never: %d earlier checkpoint(s) set aside as previous-*; starting at step 0",
                       len(complete))  # fmt: skip
    elif complete and layout.run_manifest.is_file():
        recorded = json.loads(layout.run_manifest.read_text(encoding="utf-8"))
        found = changes(recorded, current)
        if found and mode == "auto":
            raise ConfigError(
                f"{complete[-1]} was trained with other settings or data; restore them, use a new "
                "TRAIN_OUTPUT_DIR, or set TRAIN_RESUME=force (resume anyway) or TRAIN_RESUME=never (start over)",
                found,
            )
        for change in found:
            logger.warning("TRAIN_RESUME=force: resuming although %s", change)
        _report_moves(recorded, config)
    started = {**current, "processes": _processes(config), "device": Device.probe_cheaply().description}
    layout.run_manifest.write_text(json.dumps(started, indent=2, default=str) + "\n", encoding="utf-8")


def _report_moves(recorded: dict[str, Any], config: JobConfig) -> None:
    processes, device = _processes(config), Device.probe_cheaply().description
    if recorded.get("processes") != processes or recorded.get("device") != device:
        logger.warning("resuming on %d process(es), %s; the checkpoints were written on %s process(es), %s",
                       processes, device, recorded.get("processes"), recorded.get("device"))  # fmt: skip
