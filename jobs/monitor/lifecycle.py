"""Start and stop the exporter from the entrypoint (the parent); push the outcome to a Pushgateway.

The entrypoint calls `start()` before anything else (phase "validating"), `writer.set_phase()` as the
job moves on, and `finish()` with the exit code: the final values stay scrapeable until the next scrape reads
them (a PodMonitor stops scraping a pod once it has exited), at most TRAIN_METRICS_LINGER_SECONDS, and
not at all when nothing scraped during the run.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.errors import EXIT_TERMINATED, EnvironmentProblem
from jobs.monitor.writer import MULTIPROC_ENV, job_metrics

if TYPE_CHECKING:
    from jobs.config.settings import JobConfig

logger = logging.getLogger(__name__)

READY_TIMEOUT = 15.0
LINGER_POLL_SECONDS = 0.2


@dataclass
class Exporter:
    process: subprocess.Popen[bytes]
    directory: Path
    url: str


def _wait_ready(process: subprocess.Popen[bytes], url: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise EnvironmentProblem("the metrics exporter did not start (see the line above); TRAIN_METRICS_PORT=0 "
                                     "disables it")  # fmt: skip
        try:
            with urllib.request.urlopen(url + "/healthz", timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    process.kill()
    raise EnvironmentProblem(f"the metrics exporter did not answer on {url} within {READY_TIMEOUT:.0f} s")


def start(config: JobConfig) -> Exporter | None:
    """Start the exporter process for this job, or nothing when TRAIN_METRICS_PORT=0."""
    settings = config.job
    if not settings.metrics_port:
        return None
    directory = Path(tempfile.mkdtemp(prefix="trainjob-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)  # before any metric exists; inherited by every rank
    command = [
        sys.executable, "-m", "jobs.monitor.server",
        "--port", str(settings.metrics_port), "--addr", settings.metrics_addr, "--job-pid", str(os.getpid()),
    ]  # fmt: skip
    process = subprocess.Popen(command, cwd=Path(__file__).resolve().parents[2])
    host = "127.0.0.1" if settings.metrics_addr in ("0.0.0.0", "") else settings.metrics_addr
    exporter = Exporter(process=process, directory=directory, url=f"http://{host}:{settings.metrics_port}")
    try:
        _wait_ready(process, exporter.url)
    except EnvironmentProblem:
        _cleanup(exporter)
        raise
    metrics = job_metrics()
    model = str(config.model.get("model_name_or_path", ""))
    metrics.set_info(method=config.method, model=model, run_id=config.run_id)
    metrics.set_phase("validating")
    metrics.stop_grace.set(settings.stop_grace_seconds)
    return exporter


def finish(exporter: Exporter | None, config: JobConfig, exit_code: int) -> None:
    """Record the outcome, push it if asked, keep serving for the linger time, then stop."""
    if exporter is None:
        return
    settings = config.job
    metrics = job_metrics()
    metrics.exit_code.set(exit_code)
    metrics.set_phase("done" if exit_code == 0 else "failed")
    if settings.pushgateway_url:
        push_outcome(settings.pushgateway_url, config.method, config.run_id, exit_code)
    if settings.metrics_linger_seconds > 0 and exit_code != EXIT_TERMINATED:  # a stopped pod has no time to wait
        _linger(exporter, settings.metrics_linger_seconds)
    _cleanup(exporter)


def _scrapes(exporter: Exporter) -> tuple[int, int]:
    """(scrapes begun, highest scrape answered) so far; (0, 0) when the exporter does not say."""
    try:
        with urllib.request.urlopen(exporter.url + "/scrapes", timeout=2) as reply:
            counts = json.loads(reply.read())
        return int(counts["begun"]), int(counts["answered"])
    except (OSError, ValueError, KeyError):
        return 0, 0


def _linger(exporter: Exporter, longest: float) -> None:
    """Serve the final values until a scrape that began after they were set has been answered, at most
    `longest` seconds, and not at all when nothing scraped during the run (no Prometheus is watching)."""
    begun, _ = _scrapes(exporter)
    if begun == 0:
        logger.info("no scrape of the metrics during the run: not waiting for one (TRAIN_METRICS_LINGER_SECONDS)")
        return
    logger.info("serving the final metrics until the next scrape, at most %.0f s (TRAIN_METRICS_LINGER_SECONDS)",
                longest)  # fmt: skip
    deadline = time.monotonic() + longest
    stop = threading.Event()
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(LINGER_POLL_SECONDS) and time.monotonic() < deadline:
            if _scrapes(exporter)[1] > begun:
                logger.info("the final metrics were scraped")
                return
    finally:
        signal.signal(signal.SIGTERM, previous)


def _cleanup(exporter: Exporter) -> None:
    if exporter.process.poll() is None:
        exporter.process.terminate()
        try:
            exporter.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            exporter.process.kill()
    shutil.rmtree(exporter.directory, ignore_errors=True)


def push_outcome(url: str, method: str, run_id: str, exit_code: int) -> None:
    """One push of the final outcome (the Pushgateway is for a batch job's result, not its progress)."""
    from prometheus_client import CollectorRegistry, push_to_gateway
    from prometheus_client.core import GaugeMetricFamily

    class Outcome:
        def collect(self) -> Any:
            yield GaugeMetricFamily("trainjob_exit_code", "The job's exit code.", value=exit_code)
            yield GaugeMetricFamily("trainjob_finished_timestamp_seconds", "When the job ended.", value=time.time())

    registry = CollectorRegistry()
    registry.register(Outcome())  # type: ignore[arg-type]
    try:
        push_to_gateway(url, job="trainjob", grouping_key={"method": method, "run_id": run_id}, registry=registry)
        logger.info("pushed the outcome (exit code %d) to %s", exit_code, url)
    except OSError as error:
        logger.warning("could not push the outcome to %s (%s); the exit code is still %d", url, error, exit_code)
