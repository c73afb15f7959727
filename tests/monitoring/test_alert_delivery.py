"""Alerts that reach a person: a real Prometheus (Debian's `prometheus`) evaluates the shipped rules,
unchanged, against real runs, and a real Alertmanager (Debian's `prometheus-alertmanager`) delivers them
to a webhook receiver here. Only the intervals are short: scrapes and evaluations every second,
Alertmanager's group_wait one second.

A diverging run must deliver TrainJobNonFiniteLoss and TrainJobExitedWithError: the exit code is
exported once, just before the pod exits, and an alert that resolves before Alertmanager's group_wait is
never sent. A run held in its loading phase past its threshold must deliver TrainJobLoadingTooLong.
Each delivery's delay is printed (pytest -s shows it).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import yaml

from dev.testing import ROOT, clean_env, free_port
from tests.support.rules import RULES
from tests.support.servers import get, started, wait_for

pytestmark = pytest.mark.slow


@dataclass
class Webhook:
    """Alertmanager's webhook receiver: every firing alert delivered, with when it arrived."""

    port: int = 0
    firing: dict[str, float] = field(default_factory=dict)  # alertname -> first arrival (monotonic)

    def arrived(self, name: str) -> float | None:
        return self.firing.get(name)


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    received = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            for alert in body["alerts"]:
                if alert["status"] == "firing":
                    received.firing.setdefault(alert["labels"]["alertname"], time.monotonic())
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    received.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield received
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def monitoring(tmp_path: Path, webhook: Webhook) -> Iterator[int]:
    """Alertmanager routing every alert to the webhook, and Prometheus scraping the exporter port it returns
    with the shipped rules, sending to that Alertmanager."""
    exporter_port, prometheus_port, alertmanager_port = free_port(), free_port(), free_port()
    manager = {
        "route": {"receiver": "test", "group_by": ["alertname", "pod"], "group_wait": "1s", "group_interval": "1s",
                  "repeat_interval": "1h"},
        "receivers": [{"name": "test", "webhook_configs": [{"url": f"http://127.0.0.1:{webhook.port}/"}]}],
    }  # fmt: skip
    (tmp_path / "alertmanager.yml").write_text(yaml.safe_dump(manager))
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(yaml.safe_load(RULES.read_text())["spec"]))  # as shipped
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(tmp_path / "rules.yaml")],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"127.0.0.1:{alertmanager_port}"]}]}]},
        "scrape_configs": [{"job_name": "trainjob", "static_configs": [
            {"targets": [f"127.0.0.1:{exporter_port}"], "labels": {"namespace": "test", "pod": "live"}}]}],
    }  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    alertmanager = ["prometheus-alertmanager", f"--config.file={tmp_path / 'alertmanager.yml'}",
                    f"--storage.path={tmp_path / 'alertmanager'}", f"--web.listen-address=127.0.0.1:{alertmanager_port}",
                    "--cluster.listen-address="]  # fmt: skip
    prometheus = ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}",
                  f"--storage.tsdb.path={tmp_path / 'tsdb'}", f"--web.listen-address=127.0.0.1:{prometheus_port}"]  # fmt: skip
    with (
        open(tmp_path / "alertmanager.log", "wb") as manager_log,
        started(alertmanager, stdout=manager_log, stderr=manager_log),
        open(tmp_path / "prometheus.log", "wb") as prometheus_log,
        started(prometheus, stdout=prometheus_log, stderr=prometheus_log),
    ):
        wait_for(lambda: get(f"http://127.0.0.1:{alertmanager_port}/-/ready"), 30, "Alertmanager to start")
        wait_for(lambda: get(f"http://127.0.0.1:{prometheus_port}/-/ready"), 30, "Prometheus to start")
        yield exporter_port


def _settings(demo_model: str, out: Path, exporter_port: int, **extra: str) -> dict[str, str]:
    return clean_env(TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_OUTPUT_DIR=str(out),
                     TRAIN_METRICS_PORT=str(exporter_port), TRAIN_METRICS_ADDR="127.0.0.1",
                     TRAIN_METRICS_LINGER_SECONDS="60", **extra)  # fmt: skip


def test_a_diverging_run_delivers_the_non_finite_loss_and_its_exit_code(
    monitoring: int, webhook: Webhook, demo_model: str, tmp_path: Path
) -> None:
    env = _settings(demo_model, tmp_path / "out", monitoring, TRAIN_METHOD="sft",
                    TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl", TRAIN_LEARNING_RATE="1e9",
                    TRAIN_MAX_GRAD_NORM="0", TRAIN_MAX_STEPS="60", TRAIN_SAVE_STRATEGY="no")  # fmt: skip
    log = tmp_path / "run.log"
    with log.open("w") as out, started([sys.executable, "entrypoint.py"], cwd=ROOT, env=env,
                                       stdout=subprocess.DEVNULL, stderr=out) as run:  # fmt: skip
        assert run.wait(timeout=300) == 6, log.read_text()[-3000:]  # it lingers until a scrape reads the exit code
        exited = time.monotonic()
    for name in ("TrainJobNonFiniteLoss", "TrainJobExitedWithError"):
        wait_for(lambda n=name: webhook.arrived(n), 120, f"{name} at the webhook")
    for name in ("TrainJobNonFiniteLoss", "TrainJobExitedWithError"):
        print(f"{name}: delivered {webhook.firing[name] - exited:+.1f} s after the process exited")


def test_a_run_held_in_loading_past_its_threshold_delivers_the_loading_alert(
    monitoring: int, webhook: Webhook, demo_model: str, tmp_path: Path
) -> None:
    env = _settings(demo_model, tmp_path / "out", monitoring, TRAIN_METHOD="dpo",
                    TRAIN_DATA_PATH="dev/demo_data/dpo_pairs.jsonl", TRAIN_MAX_STEPS="5", TRAIN_LOADING_TIMEOUT="3")  # fmt: skip
    metrics = f"http://127.0.0.1:{monitoring}/metrics"
    log = tmp_path / "run.log"
    with log.open("w") as out:
        run = subprocess.Popen([sys.executable, "entrypoint.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                               stderr=out, start_new_session=True)  # fmt: skip
        try:
            # Caught between preflight and the first step: the training process freezes; its exporter serves on.
            deadline = time.monotonic() + 180
            while 'trainjob_phase{phase="loading"} 1.0' not in _scrape(metrics):
                assert run.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
                time.sleep(0.02)
            os.kill(run.pid, signal.SIGSTOP)
            held = time.monotonic()
            assert 'trainjob_phase{phase="loading"} 1.0' in _scrape(metrics)
            assert "trainjob_loading_threshold_seconds 3.0" in _scrape(metrics)
            wait_for(lambda: webhook.arrived("TrainJobLoadingTooLong"), 120, "TrainJobLoadingTooLong at the webhook")
        finally:
            os.killpg(run.pid, signal.SIGKILL)
            run.wait(timeout=30)
    print(
        f"TrainJobLoadingTooLong: delivered {webhook.firing['TrainJobLoadingTooLong'] - held:.1f} s after the "
        "run was held (threshold 3 s)"
    )


def _scrape(url: str) -> str:
    try:
        return get(url)
    except OSError:
        return ""
