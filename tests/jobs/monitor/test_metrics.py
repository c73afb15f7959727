"""The metric writer: TRL logs -> gauges and counters, written by one process, served by another."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

from dev.testing import ROOT

# Each case runs in a fresh interpreter: prometheus_client fixes its storage at the first metric.
WRITER = """
import sys
from jobs.methods import METHODS
from jobs.monitor.writer import job_metrics
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
m = job_metrics()
m.set_info("dpo", "/models/base", "run1")
m.set_phase("validating")
m.start_training(0, 100, save_steps=50)
m.log({"loss": 0.7, "learning_rate": 1e-5, "grad_norm": 2.0, "num_tokens": 500.0, "epoch": 0.1,
       "rewards/margins": 0.3, "rewards/accuracies": 0.75, "rewards/chosen": 0.2, "rewards/rejected": -0.1},
      METHODS["dpo"])
m.step(10, 100)
m.log({"loss": float("nan"), "num_tokens": 1200.0}, METHODS["dpo"])
m.nonfinite.inc()  # what jobs/train/guards/divergence.py does for a step whose loss or gradient norm is not finite
m.log({"eval_loss": 0.9}, METHODS["dpo"])
m.checkpoint_saved()
m.exit_code.set(0)
registry = CollectorRegistry()
MultiProcessCollector(registry)
sys.stdout.write(generate_latest(registry).decode())
"""


def _exposition(tmp_path: Path) -> dict[str, float]:
    env = {"PROMETHEUS_MULTIPROC_DIR": str(tmp_path), "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", WRITER], cwd=ROOT, env=env, capture_output=True, text=True, check=True)
    samples = {}
    for line in out.stdout.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_logs_map_to_the_contract_names(tmp_path: Path) -> None:
    samples = _exposition(tmp_path)
    assert samples['trainjob_info{method="dpo",model="/models/base",run_id="run1"}'] == 1
    assert samples['trainjob_phase{phase="training"}'] == 1 and samples['trainjob_phase{phase="validating"}'] == 0
    assert samples["trainjob_global_step"] == 10 and samples["trainjob_max_steps"] == 100
    assert samples["trainjob_progress_ratio"] == 0.1
    assert samples["trainjob_eta_seconds"] >= 0
    assert math.isnan(samples["trainjob_loss"])
    assert samples["trainjob_eval_loss"] == 0.9
    assert samples["trainjob_learning_rate"] == 1e-5 and samples["trainjob_grad_norm"] == 2.0
    assert samples["trainjob_dpo_reward_margin"] == 0.3 and samples["trainjob_dpo_reward_accuracy"] == 0.75
    assert samples["trainjob_dpo_chosen_reward"] == 0.2 and samples["trainjob_dpo_rejected_reward"] == -0.1
    assert samples["trainjob_tokens_total"] == 1200  # cumulative num_tokens becomes a counter
    assert samples["trainjob_nonfinite_loss_total"] == 1
    assert samples["trainjob_checkpoints_total"] == 1 and samples["trainjob_save_steps"] == 50
    assert samples["trainjob_last_checkpoint_timestamp_seconds"] >= samples["trainjob_last_step_timestamp_seconds"] - 5
    assert samples["trainjob_exit_code"] == 0
