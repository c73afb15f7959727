"""Launching: in-process by default, `accelerate launch` with real gloo processes when configured; a rank
that stalls is named and its group ended."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dev.testing import ROOT, clean_env, free_port, run_entrypoint
from jobs.errors import EXIT_CRASH, EXIT_STALLED
from jobs.layout import OutputLayout
from jobs.train.guards.checkpoints import latest_complete_checkpoint
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
    outcomes = sorted(p.name for p in OutputLayout(tmp_path).rank_status.glob("rank-*"))
    assert outcomes == ["rank-0.json", "rank-1.json"]


STALL_SETTINGS = {
    "TRAIN_METHOD": "sft", "TRAIN_DATA_PATH": "dev/demo_data/sft_messages.jsonl", "TRAIN_ACCELERATE_CONFIG": "multi_cpu",
    "TRAIN_SAVE_STEPS": "5", "TRAIN_LOGGING_STEPS": "1", "TRAIN_STALL_TIMEOUT": "15", "TRAIN_METRICS_PORT": "0",
}  # fmt: skip


def _signal_rank_1_after_a_checkpoint(settings: dict[str, str], layout: OutputLayout, log: Path,
                                      signum: signal.Signals) -> int:  # fmt: skip
    """Start a 2-rank run, send `signum` to rank 1 once checkpoint-5 is complete; the run's exit code (how long
    the group took to end is printed: pytest -s shows it)."""
    with log.open("w") as stderr, started([sys.executable, "entrypoint.py"], cwd=ROOT,
                                          env=clean_env(**settings, TRAIN_MAX_STEPS="400"),
                                          stdout=subprocess.DEVNULL, stderr=stderr) as run:  # fmt: skip
        wait_for(lambda: layout.is_complete(layout.checkpoint(5)), 300, "the first complete checkpoint")
        rank_1 = json.loads(layout.heartbeat_file("1").read_text())["pid"]
        os.kill(rank_1, signum)
        sent = time.monotonic()
        try:
            # The process group's own timeout (ddp_timeout) is 30 minutes at least: both faults must end the
            # group long before it.
            code = run.wait(timeout=120)
            print(f"{signum.name} to rank 1: the group ended {time.monotonic() - sent:.1f} s later, exit {code}")
            return code
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.kill(rank_1, signal.SIGKILL)


def _resumes(settings: dict[str, str], layout: OutputLayout) -> None:
    newest = latest_complete_checkpoint(layout)
    assert newest is not None
    resumed = run_entrypoint(**settings, TRAIN_MAX_STEPS=str(int(newest.name.split("-")[1]) + 2))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {newest}" in resumed.stderr and (layout.root / "final").is_dir()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("signum", "expected", "said"),
    [
        # A rank that no longer runs: rank 0 waits for it in its next all-reduce; the stall guard names it.
        (signal.SIGSTOP, EXIT_STALLED, "rank(s) 1 stopped reporting: no heartbeat and no step for "),
        # A rank that dies: torch's elastic agent ends the group at once; Kubernetes retries exit 1.
        (signal.SIGKILL, EXIT_CRASH, None),
    ],
    ids=["stopped", "killed"],
)
def test_a_stopped_or_killed_rank_ends_its_group_with_a_retried_code_and_the_restart_resumes(
    signum: signal.Signals, expected: int, said: str | None, demo_model: str, tmp_path: Path
) -> None:
    settings = {**STALL_SETTINGS, "TRAIN_MODEL_NAME_OR_PATH": demo_model, "TRAIN_OUTPUT_DIR": str(tmp_path)}
    layout, log = OutputLayout(tmp_path), tmp_path / "stderr.log"
    code = _signal_rank_1_after_a_checkpoint(settings, layout, log, signum)
    text = log.read_text()
    assert code == expected, text[-3000:]
    if said is not None:
        assert said in text
        assert "Timeout (0:00:15)!" in text  # rank 0's own stack dump (faulthandler), waiting for rank 1
    else:
        assert "stopped reporting" not in text  # not a stall: the agent saw the rank die
    _resumes(settings, layout)
