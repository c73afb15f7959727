"""This process's writer of the job's metrics: whether the job's exporter runs, and the one `JobMetrics` per
process, made on first use.

The entrypoint's `lifecycle.start()` sets PROMETHEUS_MULTIPROC_DIR before anything writes a metric, and
every process it starts inherits it. prometheus_client picks its value storage when it is first imported,
so jobs/monitor/metrics.py (which imports it) is imported here, lazily, never before that.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobs.monitor.metrics import JobMetrics

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
_INSTANCE: JobMetrics | None = None  # set by job_metrics()


def enabled() -> bool:
    """True in every process of a job whose exporter runs (the directory is inherited from the entrypoint)."""
    return bool(os.environ.get(MULTIPROC_ENV))


def job_metrics() -> JobMetrics:
    """This process's one writer (two writers in one process would share a file and corrupt it)."""
    global _INSTANCE  # noqa: PLW0603 - one per process, made on first use
    if _INSTANCE is None:
        from jobs.monitor.metrics import JobMetrics

        _INSTANCE = JobMetrics()
    return _INSTANCE


def set_phase(phase: str) -> None:
    if enabled():
        job_metrics().set_phase(phase)


def start_loading(threshold_seconds: float) -> None:
    """Phase "loading", when it began and how long it may take (jobs/estimate/loading.py)."""
    if enabled():
        job_metrics().start_loading(threshold_seconds)
