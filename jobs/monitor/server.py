"""The exporter process: serves /metrics and /healthz for the whole job.

    python -m jobs.monitor.server --port 9464 --addr 0.0.0.0 --job-pid 123   # PROMETHEUS_MULTIPROC_DIR set

Started by the entrypoint (jobs/monitor/lifecycle.py), it reads the values every process of the job
wrote into PROMETHEUS_MULTIPROC_DIR, plus NVML and psutil readings, with its own registry. It runs in
its own process so that scrapes never compete with a training step and outlive a stopped trainer.
/scrapes counts the scrapes of /metrics, for the entrypoint's wait after the end.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import FrameType
from typing import ClassVar

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector

from jobs.errors import EXIT_ENVIRONMENT
from jobs.logs import setup_logging
from jobs.monitor.gpu import gpu_collector
from jobs.monitor.system import JobProcessCollector

logger = logging.getLogger("jobs.monitor.server")

# How often serve_forever looks for a shutdown request: the entrypoint waits for the exporter to stop
# before it exits (the default half second was most of a short run's time to exit).
SHUTDOWN_POLL_SECONDS = 0.05
# Scrapes this close together share one render: collecting every process's values, the process tree and
# NVML costs milliseconds of CPU, which a scraper polling many times a second would take from training
# (dcgm-exporter collects every 30 s for the same reason). Prometheus scrapes every 15-60 s: always fresh.
RENDER_REUSE_SECONDS = 1.0


def build_registry(job_pid: int) -> CollectorRegistry:
    registry = CollectorRegistry()
    MultiProcessCollector(registry)
    gpu = gpu_collector()
    if gpu is not None:
        registry.register(gpu)
    registry.register(JobProcessCollector(job_pid))
    return registry


class ScrapeLog:
    """The scrapes of /metrics, numbered from 1 as they begin: how many began, and the highest number that
    has been answered. The entrypoint asks (GET /scrapes) to linger only until the final values are read.

    It also keeps the last render: a scrape within RENDER_REUSE_SECONDS of it gets the same bytes. Asking
    /scrapes draws a line: no scrape numbered after it reuses a render begun before it, so the scrape the
    entrypoint waits for after the end always reads the final values."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.begun = 0
        self.answered = 0
        self._line = 0  # scrapes numbered above this render afresh, or reuse a render numbered above it
        self._render: tuple[int, float, bytes] | None = None  # (scrape number, when it began, body)

    def begin(self) -> int:
        with self._lock:
            self.begun += 1
            return self.begun

    def answer(self, number: int) -> None:
        with self._lock:
            self.answered = max(self.answered, number)

    def reusable(self, now: float) -> bytes | None:
        with self._lock:
            if self._render is None:  # none yet, or dropped at the line (`keep` takes none from before it)
                return None
            _, began, body = self._render
            return body if now - began < RENDER_REUSE_SECONDS else None

    def keep(self, number: int, began: float, body: bytes) -> None:
        with self._lock:
            if number > self._line and (self._render is None or number > self._render[0]):
                self._render = (number, began, body)

    def as_json(self) -> bytes:
        with self._lock:
            self._line, self._render = self.begun, None
            return json.dumps({"begun": self.begun, "answered": self.answered}).encode() + b"\n"


class MetricsHandler(BaseHTTPRequestHandler):
    registry: ClassVar[CollectorRegistry]
    scrapes: ClassVar[ScrapeLog] = ScrapeLog()

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        if path == "/metrics":
            number, began = self.scrapes.begin(), time.monotonic()
            body = self.scrapes.reusable(began)
            if body is None:
                body = generate_latest(self.registry)
                self.scrapes.keep(number, began, body)
            self._reply(200, CONTENT_TYPE_LATEST, body)
            self.scrapes.answer(number)
        elif path == "/healthz":
            self._reply(200, "text/plain; charset=utf-8", b"ok\n")
        elif path == "/scrapes":
            self._reply(200, "application/json", self.scrapes.as_json())
        else:
            self._reply(404, "text/plain; charset=utf-8", b"not found: try /metrics or /healthz\n")

    def _reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass  # a line per scrape would drown the job's log


def _stop_with_parent(server: ThreadingHTTPServer) -> None:
    """Exit when the entrypoint is gone (killed without a chance to stop us): never an orphan exporter."""
    parent = os.getppid()

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(1)
        server.shutdown()

    threading.Thread(target=watch, daemon=True).start()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--addr", default="0.0.0.0")
    parser.add_argument("--job-pid", type=int, required=True)
    args = parser.parse_args(argv)
    setup_logging()
    MetricsHandler.registry = build_registry(args.job_pid)
    try:
        server = ThreadingHTTPServer((args.addr, args.port), MetricsHandler)
    except OSError as error:
        logger.error("cannot serve metrics on %s:%d (%s); set TRAIN_METRICS_PORT to a free port, or 0 to disable",
                     args.addr, args.port, error.strerror)  # fmt: skip
        return EXIT_ENVIRONMENT
    server.daemon_threads = True

    def stop(_signum: int, _frame: FrameType | None) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    _stop_with_parent(server)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole group; the entrypoint stops us
    logger.info("serving metrics on http://%s:%d/metrics", args.addr, server.server_address[1])
    server.serve_forever(poll_interval=SHUTDOWN_POLL_SECONDS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
