"""Resume only into the same run: what a checkpoint was trained with is recorded when a run starts, and a
restart that changed it is refused (exit 2) instead of silently mixing two trainings.

`<output>/run_identity.json` holds the settings that shape the weights (the method, every TRAIN_* of the
model and the trainer except run length and cadence) and the sha256 of the prepared data, as preflight
recorded them; the process count and the device are recorded too, and a change of them is only reported,
since a resume across them is legitimate (a bigger node after a preemption). A run started before the
file had this name wrote `run_manifest.json`, which is read in its place. TRAIN_RESUME: `auto` resumes
an unchanged run and refuses a changed one, `force` resumes anyway, `never` starts over (the old
checkpoints are set aside).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from jobs.config.resolved import ResolvedRun
from jobs.config.settings import PREFIX, redact
from jobs.errors import ConfigError

logger = logging.getLogger(__name__)

# Settings that change how long a run goes or how often it reports, not what a step does.
NOT_IDENTITY = frozenset({
    "max_steps", "num_train_epochs", "save_steps", "save_total_limit", "save_strategy", "eval_steps",
    "eval_strategy", "logging_steps", "logging_strategy", "report_to", "output_dir", "disable_tqdm",
    "hub_token", "push_to_hub", "hub_model_id", "run_name", "ddp_timeout",
})  # fmt: skip


def run_identity(run: ResolvedRun, report: dict[str, Any]) -> dict[str, Any]:
    """What must not change between a checkpoint and the run that resumes from it; `report`: the validation
    report, with the prepared files (their sha256) and the mixture as preflight recorded them."""
    prepared: dict[str, dict[str, Any]] = report.get("prepared", {})
    config = run.config
    settings = {
        name: value
        for group in (config.model, config.training)
        for name, value in group.items()
        if name not in NOT_IDENTITY and name != "model_name_or_path"
    }
    return {
        "method": run.method,
        "model": str(config.model.get("model_name_or_path")),
        "settings": redact(settings),
        "data_sha256": {role: file["sha256"] for role, file in prepared.items()},
        "mixture": mixture_identity(report.get("mixture")),
    }


# What a mixture entry trains with: the files' sha256 stand for their bytes. The YAML itself is left out, so
# a comment or a re-indent is no change.
MIXTURE_FIELDS = ("path", "split", "columns", "format", "fraction")


def mixture_identity(mixture: dict[str, Any] | None) -> dict[str, Any] | None:
    """The normalised TRAIN_DATA_MIX (None: the data came from TRAIN_DATA_PATH)."""
    if not mixture:
        return None
    entries = [
        {**{name: entry[name] for name in MIXTURE_FIELDS}, "sha256": [file["sha256"] for file in entry["files"]]}
        for entry in mixture["entries"]
    ]
    return {"entries": entries, "test_split_size": mixture["test_split_size"], "seed": mixture.get("seed")}


def _mixture_changes(before: dict[str, Any] | None, now: dict[str, Any] | None) -> list[str]:
    """A changed mixture, entry by entry and field by field. A record without the key had no mixture."""
    if before == now:
        return []
    if before is None or now is None:
        names = ["TRAIN_DATA_PATH", "TRAIN_DATA_MIX"]
        then, current = names if before is None else names[::-1]
        return [f"the data: {then} then, {current} now"]
    found = [f"TRAIN_DATA_MIX {key}: {before.get(key)!r} then, {now.get(key)!r} now"
             for key in ("test_split_size", "seed") if before.get(key) != now.get(key)]  # fmt: skip
    old, new = before["entries"], now["entries"]
    for index in range(max(len(old), len(new))):
        if index >= len(old) or index >= len(new):
            entry, what = (new[index], "added") if index >= len(old) else (old[index], "removed")
            found.append(f"TRAIN_DATA_MIX datasets[{index}] ({entry['path']}): {what}")
            continue
        found.extend(_entry_changes(index, old[index], new[index]))
    return found


def _entry_changes(index: int, then: dict[str, Any], now: dict[str, Any]) -> list[str]:
    where = f"TRAIN_DATA_MIX datasets[{index}] ({now['path']})"
    found = [f"{where}: {name} {then.get(name)!r} then, {now.get(name)!r} now"
             for name in MIXTURE_FIELDS if then.get(name) != now.get(name)]  # fmt: skip
    if then.get("sha256") != now.get("sha256"):
        found.append(f"{where}: its files differ (sha256 {', '.join(d[:12] for d in now['sha256'])})")
    return found


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
    found.extend(_mixture_changes(recorded.get("mixture"), current.get("mixture")))
    for role, digest in current["data_sha256"].items():
        if recorded.get("data_sha256", {}).get(role) != digest:
            found.append(f"the {role} data: its validated records differ (sha256 {digest[:12]}...)")
    return found


def _recorded(run: ResolvedRun) -> dict[str, Any] | None:
    """What the checkpoints were trained with, as the run that wrote them recorded it; None where nothing
    was recorded. A record that does not read (a volume that filled while it was written) is exit 2, unless
    TRAIN_RESUME=force, which resumes without it."""
    layout = run.layout
    for path in (layout.run_identity, layout.legacy_run_identity):
        if not path.is_file():
            continue
        try:
            recorded = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as error:
            recorded = error
        if isinstance(recorded, dict):
            return recorded
        if run.job.resume == "force":
            logger.warning("TRAIN_RESUME=force: resuming although %s does not read (%s)", path, recorded)
            return None
        raise ConfigError(f"{path} does not read as the record of what the checkpoints were trained with "
                          f"({recorded}); move it aside and set TRAIN_RESUME=force to resume anyway, or "
                          "TRAIN_RESUME=never to start over")  # fmt: skip
    return None


def check_resume(run: ResolvedRun, report: dict[str, Any]) -> None:
    """Refuse a resume into a changed run, or start over, as TRAIN_RESUME says; then record this start.
    `report`: the validation report."""
    layout = run.layout
    current = run_identity(run, report)
    complete = [d for _, d in layout.checkpoints() if layout.is_complete(d)]
    mode = run.job.resume
    if complete and mode == "never":
        for directory in complete:
            directory.rename(directory.with_name(f"previous-{directory.name}.{time.strftime('%Y%m%d-%H%M%S')}"))
        logger.warning("TRAIN_RESUME=never: %d earlier checkpoint(s) set aside as previous-*; starting at step 0",
                       len(complete))  # fmt: skip
    elif complete and (recorded := _recorded(run)) is not None:
        found = changes(recorded, current)
        if found and mode == "auto":
            raise ConfigError(
                f"{complete[-1]} was trained with other settings or data; restore them, use a new "
                "TRAIN_OUTPUT_DIR, or set TRAIN_RESUME=force (resume anyway) or TRAIN_RESUME=never (start over)",
                found,
            )
        for change in found:
            logger.warning("TRAIN_RESUME=force: resuming although %s", change)
        _report_moves(recorded, run)
    started = {**current, "processes": run.processes, "device": run.device.description}
    partial = layout.run_identity.with_suffix(".partial")  # written whole, then renamed: never half a record
    partial.write_text(json.dumps(started, indent=2, default=str) + "\n", encoding="utf-8")
    partial.replace(layout.run_identity)


def _report_moves(recorded: dict[str, Any], run: ResolvedRun) -> None:
    if recorded.get("processes") != run.processes or recorded.get("device") != run.device.description:
        logger.warning("resuming on %d process(es), %s; the checkpoints were written on %s process(es), %s",
                       run.processes, run.device.description, recorded.get("processes"),
                       recorded.get("device"))  # fmt: skip
