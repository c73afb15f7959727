"""Benchmark: training step time with the exporter on (scraped 20 times a second) against off.

    make bench            # or: .venv/bin/python -m bench.run --only exporter

Each run trains the demo DPO model for STEPS steps through the real entrypoint; the step time is TRL's
train_runtime / steps (model loading excluded). Runs alternate on/off, REPEATS each; the ratio of the
medians is reported (goal <= 1.02). Results: output/bench/exporter.json.
"""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

from bench.common import ROOT, publish
from dev.testing import free_port

STEPS = 300
REPEATS = 3
SCRAPES_PER_SECOND = 20


def _scrape_until(stop: threading.Event, url: str, counter: list[int]) -> None:
    while not stop.is_set():
        started = time.monotonic()
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                response.read()
            counter[0] += 1
        except OSError:
            pass  # not up yet, or already gone
        stop.wait(max(0.0, 1 / SCRAPES_PER_SECOND - (time.monotonic() - started)))


def step_seconds(exporter: bool) -> tuple[float, int]:
    port = free_port() if exporter else 0
    with tempfile.TemporaryDirectory() as out:
        env = {
            "PATH": "/usr/bin:/bin", "HF_HUB_OFFLINE": "1", "TRAIN_LOG_FORMAT": "json", "TRAIN_METHOD": "dpo",
            "TRAIN_MODEL_NAME_OR_PATH": str(ROOT / ".cache" / "demo-model"),
            "TRAIN_DATA_PATH": str(ROOT / "dev" / "demo_data" / "dpo_pairs.jsonl"), "TRAIN_OUTPUT_DIR": out,
            "TRAIN_MAX_STEPS": str(STEPS), "TRAIN_SAVE_STRATEGY": "no", "TRAIN_LOGGING_STEPS": "5",
            "TRAIN_METRICS_PORT": str(port), "TRAIN_METRICS_ADDR": "127.0.0.1",
        }  # fmt: skip
        stop, scrapes = threading.Event(), [0]
        scraper = threading.Thread(target=_scrape_until, args=(stop, f"http://127.0.0.1:{port}/metrics", scrapes))
        if exporter:
            scraper.start()
        try:
            run = subprocess.run([sys.executable, "entrypoint.py"], cwd=ROOT, env=env, capture_output=True, text=True,
                                 check=True)  # fmt: skip
        finally:
            stop.set()
            if exporter:
                scraper.join()
    runtime = next(json.loads(line)["train_runtime"] for line in run.stderr.splitlines() if '"train_runtime"' in line)
    return runtime / STEPS, scrapes[0]


def run(quick: bool = False) -> dict[str, object]:
    if not (ROOT / ".cache" / "demo-model" / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "dev.demo", "model", str(ROOT / ".cache" / "demo-model")], check=True)
    on, off, scrapes = [], [], []
    for _ in range(REPEATS):
        seconds, count = step_seconds(exporter=True)
        on.append(seconds)
        scrapes.append(count)
        off.append(step_seconds(exporter=False)[0])
    results = {
        "steps_per_run": STEPS,
        "step_seconds_exporter_on": [round(s, 5) for s in on],
        "step_seconds_exporter_off": [round(s, 5) for s in off],
        "scrapes_per_run": scrapes,
        "ratio_on_over_off": round(statistics.median(on) / statistics.median(off), 3),
        "spread_on": [round(min(on) / statistics.median(off), 3), round(max(on) / statistics.median(off), 3)],
    }
    return results


if __name__ == "__main__":
    publish("exporter", run())
