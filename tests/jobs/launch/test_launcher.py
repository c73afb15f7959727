"""Launching: in-process by default, `accelerate launch` with real gloo processes when configured."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from dev.testing import ROOT, clean_env, free_port
from jobs.layout import OutputLayout
from tests.support.servers import get, started, wait_for


@pytest.mark.slow
def test_two_gloo_processes_train_one_model_and_rank_0_reports_it(demo_model: str, tmp_path: Path) -> None:
    port = free_port()
    env = clean_env(
        TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH="dev/demo_data/dpo_pairs.jsonl",
        TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_ACCELERATE_CONFIG="multi_cpu", TRAIN_USE_PEFT="true",
        TRAIN_MAX_STEPS="10", TRAIN_LOGGING_STEPS="5", TRAIN_LEARNING_RATE="5e-3",
        TRAIN_METRICS_PORT=str(port), TRAIN_METRICS_ADDR="127.0.0.1", TRAIN_METRICS_LINGER_SECONDS="60",
    )  # fmt: skip
    log = tmp_path / "stderr.log"  # a file, not a pipe nobody reads while waiting
    with log.open("w") as stderr, started([sys.executable, "entrypoint.py"], cwd=ROOT, env=env,
                                          stdout=subprocess.DEVNULL, stderr=stderr) as run:  # fmt: skip
        url = f"http://127.0.0.1:{port}/metrics"
        final = wait_for(lambda: "trainjob_exit_code 0.0" in (s := get(url)) and s, 240, "the lingering final metrics")
        run.send_signal(signal.SIGTERM)  # end the linger
        assert run.wait(timeout=60) == 0, log.read_text()[-3000:]
    # The training values come from the rank-0 child, served by the entrypoint's exporter.
    assert "trainjob_global_step 10.0" in final and "trainjob_dpo_reward_margin" in final
    manifest = json.loads((tmp_path / "final" / "run_manifest.json").read_text())
    assert manifest["world_size"] == 2
    outcomes = sorted(p.name for p in OutputLayout(tmp_path).rank_status.iterdir())
    assert outcomes == ["rank-0.json", "rank-1.json"]
