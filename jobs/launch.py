"""Launch training: in this process by default, or through `accelerate launch` with TRAIN_ACCELERATE_CONFIG.

Under `accelerate launch` the entrypoint stays the parent of every rank: it forwards SIGTERM/SIGINT to
the ranks themselves, not to torch's elastic agent (which would signal them a second time, and kill them
30 s later unless TORCH_ELASTIC_SHUTDOWN_TIMEOUT, set here from TRAIN_STOP_GRACE_SECONDS, says
otherwise). It reaps the children and turns the ranks' recorded outcomes back into the job's exit code,
which the elastic agent would otherwise flatten to 1.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from pathlib import Path
from types import FrameType

import psutil

from jobs.config import RUN_ID_VARIABLE, JobConfig
from jobs.worker import recorded_exit_code, run_worker

logger = logging.getLogger(__name__)


def _ranks(launcher_pid: int) -> list[int]:
    """The training processes: the children of `accelerate launch`'s in-process elastic agent."""
    try:
        return [child.pid for child in psutil.Process(launcher_pid).children()]
    except psutil.Error:
        return []


def launch(config: JobConfig) -> int:
    if config.accelerate_config is None:
        return run_worker(config)
    return _launch_accelerate(config, config.accelerate_config)


def _launch_accelerate(config: JobConfig, accelerate_config: Path) -> int:
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(accelerate_config),
        *config.topology.launch_arguments(),  # TRAIN_NUM_PROCESSES ..., PET_*, JOB_COMPLETION_INDEX
        "-m", "jobs.worker",
    ]  # fmt: skip
    for stale in config.layout.rank_status.glob("rank-*.json"):
        stale.unlink()
    logger.info("launching: %s", " ".join(command))
    # A session of its own, so a forwarded signal reaches every rank at once.
    env = {
        **os.environ,
        RUN_ID_VARIABLE: config.run_id,  # every rank reports this run
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(int(config.job.stop_grace_seconds)),
    }
    child = subprocess.Popen(command, start_new_session=True, env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        ranks = _ranks(child.pid)
        logger.warning("received %s: forwarding it to %d training process(es)", signal.Signals(signum).name, len(ranks))
        for pid in ranks or [-child.pid]:  # no rank yet: stop the launcher's whole group
            with contextlib.suppress(ProcessLookupError):  # already exited
                os.kill(pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        returncode = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if returncode == 0:
        return 0
    recorded = recorded_exit_code(config.layout)
    return recorded if recorded is not None else (128 - returncode if returncode < 0 else returncode)
