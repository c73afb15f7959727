"""Launch training: in this process by default, or through `accelerate launch` with TRAIN_ACCELERATE_CONFIG.

Under `accelerate launch` the entrypoint stays the parent of every rank: it hands them the resolved run
(TRAINJOB_RUN), gives `accelerate launch` the run's process and machine counts, forwards SIGTERM/SIGINT
to the ranks themselves, not to torch's elastic agent (which would signal them a second time, and kill
them 30 s later unless TORCH_ELASTIC_SHUTDOWN_TIMEOUT, set here from TRAIN_STOP_GRACE_SECONDS, says
otherwise). It reaps the children and turns the ranks' recorded outcomes back into the job's exit code,
which the elastic agent would otherwise flatten to 1. While they train it reads their heartbeats, and ends
the group with exit 8 when one stalls (jobs/launch/stall.py).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import subprocess
import sys
from types import FrameType

import psutil

from jobs.config.resolved import RUN_VARIABLE, ResolvedRun
from jobs.errors import EXIT_STALLED
from jobs.launch.stall import StallWatcher
from jobs.launch.worker import recorded_exit_code

logger = logging.getLogger(__name__)


WATCH_SECONDS = 2.0  # how often the ranks' heartbeats are read

# The `accelerate launch` session while one runs, for `stop_at_once`.
_SESSION: subprocess.Popen[bytes] | None = None


def stop_at_once(reason: str, exit_code: int) -> None:
    """End this job now, ranks included, without another write (the output directory's lease was taken over
    by another job: jobs/preflight/lease.py). The exporter stops with this process."""
    logger.error("%s; stopping at once, without another write", reason)
    if _SESSION is not None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(_SESSION.pid, signal.SIGKILL)
    logging.shutdown()
    os._exit(exit_code)


def _ranks(launcher_pid: int) -> list[int]:
    """The training processes: the children of `accelerate launch`'s in-process elastic agent."""
    try:
        return [child.pid for child in psutil.Process(launcher_pid).children()]
    except psutil.Error:
        return []


def launch(run: ResolvedRun) -> int:
    """Train the run; its exit code. In this process a failure propagates to the entrypoint as raised."""
    if run.config.accelerate_config is None:
        from jobs.train.run import train

        train(run)
        return 0
    return _launch_accelerate(run)


def launch_arguments(run: ResolvedRun) -> list[str]:
    """`accelerate launch` flags: the run's counts, and this machine's place where the environment gave it."""
    topology = run.config.topology
    arguments = ["--num_processes", str(run.processes), "--num_machines", str(run.machines)]
    for name in ("machine_rank", "main_process_ip", "main_process_port"):
        value = getattr(topology, name)
        if value is not None:
            arguments += [f"--{name}", str(value)]
    return arguments


def _wait_watching(child: subprocess.Popen[bytes], watcher: StallWatcher) -> int:
    """The session's return code, or EXIT_STALLED once a rank stalls (jobs/launch/stall.py): the whole
    group is killed, since a stalled group cannot save; a retry resumes from the last complete checkpoint."""
    while True:
        try:
            return child.wait(timeout=WATCH_SECONDS)
        except subprocess.TimeoutExpired:
            stall = watcher.check(set(_ranks(child.pid)))
        if stall is not None:
            logger.error("%s; ending the group (exit %d, retried: the restart resumes)", stall.describe(),
                         EXIT_STALLED)  # fmt: skip
            with contextlib.suppress(ProcessLookupError):
                os.killpg(child.pid, signal.SIGKILL)
            child.wait()
            return EXIT_STALLED


def _launch_accelerate(run: ResolvedRun) -> int:
    assert run.config.accelerate_config is not None
    command = [
        sys.executable, "-m", "accelerate.commands.launch",
        "--config_file", str(run.config.accelerate_config),
        *launch_arguments(run),
        "-m", "jobs.launch.worker",
    ]  # fmt: skip
    for stale in [*run.layout.rank_status.glob("rank-*.json"), *run.layout.heartbeat_files()]:
        stale.unlink()
    logger.info("launching: %s", " ".join(command))
    env = {
        **os.environ,
        RUN_VARIABLE: run.to_json(),  # every rank trains this run, as resolved here
        "TORCH_ELASTIC_SHUTDOWN_TIMEOUT": str(int(run.job.stop_grace_seconds)),
    }
    # A session of its own, so a forwarded signal reaches every rank at once.
    global _SESSION  # noqa: PLW0603 - the one session this process runs, for stop_at_once
    child = _SESSION = subprocess.Popen(command, start_new_session=True, env=env)

    def forward(signum: int, _frame: FrameType | None) -> None:
        ranks = _ranks(child.pid)
        logger.warning("received %s: forwarding it to %d training process(es)", signal.Signals(signum).name, len(ranks))
        for pid in ranks or [-child.pid]:  # no rank yet: stop the launcher's whole group
            with contextlib.suppress(ProcessLookupError):  # already exited
                os.kill(pid, signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        returncode = _wait_watching(child, StallWatcher(run.layout))
    finally:
        _SESSION = None
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if returncode == 0:
        return 0
    recorded = recorded_exit_code(run.layout)
    return recorded if recorded is not None else (128 - returncode if returncode < 0 else returncode)
