"""TRAIN_PROFILE: the torch profiler's trace, top operators and memory timeline of a real CPU run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dev.testing import Run, run_entrypoint


def profiled_sft(demo_model: str, output: Path, steps: int, profile: int) -> Run:
    return run_entrypoint(
        TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl",
        TRAIN_OUTPUT_DIR=str(output), TRAIN_MAX_STEPS=str(steps), TRAIN_PROFILE=str(profile),
    )  # fmt: skip


@pytest.mark.slow
def test_profile_records_the_asked_steps_after_the_warm_up(demo_model: str, tmp_path: Path) -> None:
    run = profiled_sft(demo_model, tmp_path, steps=6, profile=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "TRAIN_PROFILE: 2 steps from step 3 recorded" in run.stderr
    profile = tmp_path / "profile"
    trace = json.loads((profile / "trace-rank0.json").read_text())
    steps = {e["name"] for e in trace["traceEvents"] if e.get("name", "").startswith("ProfilerStep#")}
    assert steps == {"ProfilerStep#3", "ProfilerStep#4"}  # training steps 3 and 4: steps 1-2 are the warm-up
    operators = (profile / "operators-rank0.txt").read_text()
    assert "aten::mm" in operators and ".py(" not in operators  # torch's operators, not Python frames
    times, sizes = json.loads((profile / "memory-rank0.json").read_text())
    assert len(times) == len(sizes) > 0 and max(max(s) for s in sizes) > 0


@pytest.mark.slow
def test_a_run_too_short_for_the_profile_says_so_and_still_succeeds(demo_model: str, tmp_path: Path) -> None:
    run = profiled_sft(demo_model, tmp_path, steps=2, profile=3)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "before step 3 where recording starts; no profile written" in run.stderr
    assert not (tmp_path / "profile").exists()
