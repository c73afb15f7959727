"""The exporter end to end: a real Prometheus server scrapes a real CPU training run.

Also: /healthz, a clean `promtool check metrics`, no GPU series on this GPU-less machine, a busy port
refused with exit 4, the final outcome pushed to a real Pushgateway, and served after the end until a
scrape reads it (not at all when nothing scraped).
"""

from __future__ import annotations

import json
import math
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from dev.testing import ROOT, clean_env, free_port, run_entrypoint
from tests.support.rules import RULES
from tests.support.servers import get, started, wait_for


def short_interval_rules(path: Path) -> Path:
    """The shipped rules with the stall threshold cut from 15 minutes to 3 seconds, for a live test."""
    spec = yaml.safe_load(RULES.read_text())["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            if rule.get("alert") == "TrainJobStalled":
                assert "> 900" in rule["expr"]
                rule["expr"] = rule["expr"].replace("> 900", "> 3")
                rule["for"] = "0s"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[int, int]]:
    """A real Prometheus on loopback scraping (every second) an exporter port it hands out."""
    exporter_port, port = free_port(), free_port()
    config = {
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(short_interval_rules(tmp_path / "rules.yaml"))],
        "scrape_configs": [{"job_name": "trainjob", "static_configs": [
            {"targets": [f"127.0.0.1:{exporter_port}"], "labels": {"namespace": "test", "pod": "live"}}]}],
    }  # fmt: skip
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    args = ["prometheus", f"--config.file={tmp_path / 'prometheus.yml'}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{port}"]  # fmt: skip
    # Stopped by its own handle at teardown, whether the test passed or not.
    with open(tmp_path / "prometheus.log", "wb") as log, started(args, stdout=log, stderr=log):
        wait_for(lambda: get(f"http://127.0.0.1:{port}/-/ready"), 30, "Prometheus to start")
        yield exporter_port, port


def query(port: int, expr: str) -> float | None:
    url = f"http://127.0.0.1:{port}/api/v1/query?query={urllib.request.quote(expr)}"
    result = json.loads(get(url))["data"]["result"]
    return float(result[0]["value"][1]) if result else None


def alert_state(port: int, name: str) -> str | None:
    alerts = json.loads(get(f"http://127.0.0.1:{port}/api/v1/alerts"))["data"]["alerts"]
    return next((a["state"] for a in alerts if a["labels"]["alertname"] == name), None)


@pytest.mark.slow
def test_prometheus_scrapes_a_live_run_and_the_stall_alert_follows_sigstop(
    prometheus: tuple[int, int], demo_model: str, tmp_path: Path
) -> None:
    exporter_port, port = prometheus
    env = clean_env(
        TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH="dev/demo_data/dpo_pairs.jsonl",
        TRAIN_OUTPUT_DIR=str(tmp_path / "out"), TRAIN_MAX_STEPS="100000", TRAIN_SAVE_STRATEGY="no",
        TRAIN_LEARNING_RATE="5e-4", TRAIN_METRICS_PORT=str(exporter_port), TRAIN_METRICS_ADDR="127.0.0.1",
        TRAIN_METRICS_LINGER_SECONDS="0",
    )  # fmt: skip
    log = open(tmp_path / "train.log", "wb")  # noqa: SIM115 - closed below
    run = subprocess.Popen([sys.executable, "entrypoint.py"], cwd=ROOT, env=env, stdout=log, stderr=log,
                           start_new_session=True)  # fmt: skip
    try:
        first = wait_for(lambda: query(port, "trainjob_global_step"), 120, "a scraped training step")
        later = wait_for(lambda: (q := query(port, "trainjob_global_step")) and q > first and q, 30, "more steps")
        assert later > first
        loss = wait_for(lambda: query(port, "trainjob_loss"), 30, "a scraped loss")
        assert math.isfinite(loss)
        assert query(port, 'trainjob_phase{phase="training"}') == 1
        # The estimate, exported before the model loaded, beside the peak measured since (both above the
        # memory the process held before the model loaded).
        estimate = wait_for(lambda: query(port, "trainjob_memory_estimate_bytes"), 30, "the memory estimate")
        peak = wait_for(lambda: query(port, "trainjob_memory_peak_bytes"), 30, "the measured memory peak")
        assert estimate > 0 and peak > 0
        scrape = get(f"http://127.0.0.1:{exporter_port}/metrics")
        assert "trainjob_gpu_" not in scrape  # no GPU here: no GPU series, never fake zeros
        lint = subprocess.run(
            ["promtool", "check", "metrics"], input=scrape, capture_output=True, text=True, check=False
        )
        assert lint.returncode == 0 and not lint.stdout.strip() and not lint.stderr.strip(), lint.stdout + lint.stderr
        os.kill(run.pid, signal.SIGSTOP)  # the trainer freezes; its exporter process keeps serving
        wait_for(lambda: alert_state(port, "TrainJobStalled") == "firing", 60, "the stall alert to fire")
        os.kill(run.pid, signal.SIGCONT)
        wait_for(lambda: alert_state(port, "TrainJobStalled") is None, 60, "the stall alert to clear")
    finally:
        os.killpg(run.pid, signal.SIGKILL)
        run.wait(timeout=30)
        log.close()


def test_a_busy_metrics_port_is_an_environment_error(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        run = run_entrypoint(
            TRAIN_METHOD="sft", TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl", TRAIN_OUTPUT_DIR=str(tmp_path),
            TRAIN_METRICS_PORT=str(busy.getsockname()[1]), TRAIN_METRICS_ADDR="127.0.0.1",
        )  # fmt: skip
    assert run.returncode == 4, run.stderr[-2000:]
    assert "set TRAIN_METRICS_PORT to a free port, or 0 to disable" in run.stderr
    assert "Traceback" not in run.stderr


@pytest.mark.slow
def test_the_outcome_lingers_and_is_pushed_to_a_pushgateway(demo_model: str, tmp_path: Path) -> None:
    gateway_port, exporter_port = free_port(), free_port()
    gateway = ["prometheus-pushgateway", f"--web.listen-address=127.0.0.1:{gateway_port}"]
    # Both processes are stopped by their own handles when the block ends, whether the test passed or not.
    with started(gateway, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL):
        wait_for(lambda: get(f"http://127.0.0.1:{gateway_port}/-/ready"), 30, "the Pushgateway")
        env = clean_env(
            TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl",
            TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_MAX_STEPS="3", TRAIN_METRICS_PORT=str(exporter_port),
            TRAIN_METRICS_ADDR="127.0.0.1", TRAIN_METRICS_LINGER_SECONDS="30",
            TRAIN_PUSHGATEWAY_URL=f"http://127.0.0.1:{gateway_port}",
        )  # fmt: skip
        with started([sys.executable, "entrypoint.py"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL) as run:  # fmt: skip
            final = wait_for(lambda: "trainjob_exit_code 0.0" in (s := get(f"http://127.0.0.1:{exporter_port}/metrics"))
                             and s, 120, "the final exit code while lingering")  # fmt: skip
            assert 'trainjob_phase{phase="done"} 1.0' in final
            pushed = get(f"http://127.0.0.1:{gateway_port}/metrics")
            assert 'trainjob_exit_code{instance="",job="trainjob",method="sft",run_id=' in pushed
            run.send_signal(signal.SIGTERM)  # ends the linger early
            assert run.wait(timeout=30) == 0


@pytest.mark.slow
def test_the_job_waits_after_the_end_only_for_the_scrape_that_reads_the_outcome(
    demo_model: str, tmp_path: Path
) -> None:
    # A linger long enough that waiting it out would fail the wait() below: the job must end on its own,
    # right after the first scrape that began after the end, and at once when nothing scraped at all.
    for scraped in (True, False):
        port = free_port()
        env = clean_env(
            TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl",
            TRAIN_OUTPUT_DIR=str(tmp_path / str(scraped)), TRAIN_MAX_STEPS="3", TRAIN_METRICS_PORT=str(port),
            TRAIN_METRICS_ADDR="127.0.0.1", TRAIN_METRICS_LINGER_SECONDS="900",
        )  # fmt: skip
        log = tmp_path / f"{scraped}.log"
        with log.open("w") as stderr, started([sys.executable, "entrypoint.py"], cwd=ROOT, env=env,
                                              stdout=subprocess.DEVNULL, stderr=stderr) as run:  # fmt: skip
            if scraped:
                url = f"http://127.0.0.1:{port}/metrics"
                final = wait_for(
                    lambda u=url: "trainjob_exit_code 0.0" in (s := get(u)) and s, 120, "the final exit code"
                )
                assert 'trainjob_phase{phase="done"} 1.0' in final
            assert run.wait(timeout=240) == 0, log.read_text()[-3000:]
        text = log.read_text()
        if scraped:
            assert "until the next scrape" in text and "the final metrics were scraped" in text
        else:
            assert "no scrape of the metrics during the run: not waiting for one" in text
