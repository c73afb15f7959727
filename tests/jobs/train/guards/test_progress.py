"""What a person sees: a progress bar on a terminal and plain lines in a pipe, the same lines appended to
the output directory's log file, and TensorBoard event files with the training scalars."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
from pathlib import Path

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dev.testing import ROOT, clean_env, run_entrypoint

SETTINGS = {
    "TRAIN_METHOD": "sft", "TRAIN_DATA_PATH": "dev/demo_data/sft_messages.jsonl", "TRAIN_MAX_STEPS": "20",
    "TRAIN_LOGGING_STEPS": "5", "TRAIN_LEARNING_RATE": "2e-3", "TRAIN_LOG_FORMAT": "text",
}  # fmt: skip
STEP_LINE = "INFO jobs.train: step 20/20 loss="


def _run_on_a_terminal(env: dict[str, str]) -> tuple[int, str]:
    """The entrypoint with stderr on a pseudo-terminal, as in an interactive shell; what the terminal showed."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 120, 0, 0))  # a new pty is 0 columns wide
    process = subprocess.Popen([sys.executable, "entrypoint.py"], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                               stdout=subprocess.DEVNULL, stderr=follower)  # fmt: skip
    os.close(follower)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed: every writer has exited
            break
        if not chunk:
            break
        shown += chunk
    os.close(leader)
    return process.wait(timeout=600), shown.decode(errors="replace")


@pytest.mark.slow
def test_a_terminal_gets_a_progress_bar_and_the_log_file_every_line(demo_model: str, tmp_path: Path) -> None:
    env = clean_env(**SETTINGS, TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_OUTPUT_DIR=str(tmp_path))
    code, shown = _run_on_a_terminal(env)
    assert code == 0, shown[-3000:]
    assert "training: 100%" in shown and "20/20" in shown and "loss=" in shown  # tqdm's bar and postfix
    assert STEP_LINE not in shown  # the bar replaces the per-step lines on the terminal ...
    log = (tmp_path / "train.log").read_text()
    assert STEP_LINE in log and "final model saved" in log  # ... which the log file keeps


@pytest.mark.slow
def test_a_pipe_gets_plain_lines_appended_across_runs_and_tensorboard_scalars(demo_model: str, tmp_path: Path) -> None:
    settings = {**SETTINGS, "TRAIN_MODEL_NAME_OR_PATH": demo_model, "TRAIN_OUTPUT_DIR": str(tmp_path)}
    first = run_entrypoint(**settings)
    assert first.returncode == 0, first.stderr[-3000:]
    assert STEP_LINE in first.stderr and "%|" not in first.stderr  # no bar when stderr is not a terminal
    second = run_entrypoint(**{**settings, "TRAIN_MAX_STEPS": "25"})  # resumes from checkpoint-20
    assert second.returncode == 0, second.stderr[-3000:]
    log = (tmp_path / "train.log").read_text()
    assert log.startswith(first.stderr.splitlines()[0])  # the same lines as stderr, the first run's first
    assert log.count("exit code 0") == 2 and "step 25/25 loss=" in log
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    scalars = set(events.Tags()["scalars"])
    assert {"train/loss", "train/learning_rate", "train/grad_norm", "train/param_norm", "train/update_ratio"} <= scalars
    assert [event.step for event in events.Scalars("train/loss")][:4] == [5, 10, 15, 20]


def test_report_to_still_overrides_tensorboard(tmp_path: Path) -> None:
    run = run_entrypoint("validate", **{**SETTINGS, "TRAIN_OUTPUT_DIR": str(tmp_path), "TRAIN_REPORT_TO": "none"})
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "train.log").is_file() and "exit code 0" in (tmp_path / "train.log").read_text()
