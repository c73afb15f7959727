"""Launch training: in this process when one CPU process suffices, else `accelerate launch`.

Under `accelerate launch` the entrypoint stays the parent of every rank: it forwards SIGTERM/SIGINT to
the whole process group (so ranks hear it directly, not after the launcher's own timeout), reaps the
children, and turns the ranks' recorded outcomes back into the job's exit code, which torch's elastic
launcher would otherwise flatten to 1.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

from jobs.config import JobConfig
from jobs.errors import EXIT_CRASH, ConfigError

logger = logging.getLogger(__name__)

ACCELERATE_CONFIG_DIR = Path(__file__).resolve().parent.parent / "accelerate_configs"
STATUS_DIR_NAME = "rank_status"


def resolve_accelerate_config(value: str) -> Path:
    """A name from accelerate_configs/ or a path to an Accelerate YAML file."""
    named = ACCELERATE_CONFIG_DIR / f"{value}.yaml"
    if named.is_file():
        return named
    path = Path(value)
    if path.is_file():
        return path
    names = sorted(p.stem for p in ACCELERATE_CONFIG_DIR.glob("*.yaml"))
    raise ConfigError(f"TRAIN_ACCELERATE_CONFIG={value!r} is neither a file nor one of: {', '.join(names)}")


def launch(config: JobConfig) -> int:
    if not config.job.accelerate_config:
        from jobs.training import run_worker

        method = importlib.import_module(f"jobs.{config.method}")
        return run_worker(method.main, config)
    return _launch_accelerate(config, resolve_accelerate_config(config.job.accelerate_config))


def status_dir(output_dir: Path) -> Path:
    return output_dir / STATUS_DIR_NAME


def record_rank_outcome(output_dir: Path, exit_code: int) -> None:
    """Called by each rank at exit, so the launcher can report the real cause, not the launcher's 1."""
    rank = os.environ.get("RANK", "0")
    directory = status_dir(output_dir)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"rank-{rank}.json").write_text(json.dumps({"exit_code": exit_code}), encoding="utf-8")


def _recorded_exit_code(output_dir: Path) -> int | None:
    codes = []
    for path in status_dir(output_dir).glob("rank-*.json"):
        try:
            codes.append(int(json.loads(path.read_text(encoding="utf-8"))["exit_code"]))
        except (OSError, ValueError, KeyError):
            continue
    specific = [code for code in codes if code not in (0, EXIT_CRASH)]
    if specific:
        return min(specific)  # the configuration/data/environment cause outranks its consequences
    return max(codes) if codes else None


def _launch_accelerate(config: JobConfig, accelerate_config: Path) -> int:
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(accelerate_config),
        "-m", f"jobs.{config.method}",
    ]  # fmt: skip
    for stale in status_dir(config.output_dir).glob("rank-*.json"):
        stale.unlink()
    logger.info("launching: %s", " ".join(command))
    # A session of its own, so a forwarded signal reaches every rank at once.
    child = subprocess.Popen(command, start_new_session=True)

    def forward(signum: int, _frame: FrameType | None) -> None:
        logger.warning("received %s: forwarding it to the training processes", signal.Signals(signum).name)
        with contextlib.suppress(ProcessLookupError):  # the children already exited
            os.killpg(child.pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        returncode = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if returncode == 0:
        return 0
    recorded = _recorded_exit_code(config.output_dir)
    return recorded if recorded is not None else (128 - returncode if returncode < 0 else returncode)
