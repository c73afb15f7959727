"""Stalled ranks told apart by their heartbeats (jobs/launch/stall.py, jobs/train/guards/stall.py), by unit;
the real 2-rank case, a SIGSTOPped rank, is in tests/jobs/launch/test_launcher.py."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

import pytest

from jobs.launch import stall
from jobs.launch.stall import StallWatcher
from jobs.layout import OutputLayout
from jobs.train.guards.stall import FIRST_SAVE_FLOOR_SECONDS, STALL_FLOOR_SECONDS, StallWatch
from jobs.train.guards.stopping import StopBudget


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(stall.time, "monotonic", clock)
    return clock


def _beat(layout: OutputLayout, rank: int, beat: int, progress: int, **extra: Any) -> None:
    layout.rank_status.mkdir(parents=True, exist_ok=True)
    body = {"rank": str(rank), "host": socket.gethostname(), "pid": 100 + rank, "beat": beat, "progress": progress,
            "phase": "training", "step": 7, "timeout": 30.0, **extra}  # fmt: skip
    layout.heartbeat_file(str(rank)).write_text(json.dumps(body))


def test_the_rank_that_stopped_beating_is_named_not_the_one_waiting_for_it(tmp_path: Path, clock: Clock) -> None:
    layout = OutputLayout(tmp_path)
    watcher = StallWatcher(layout)
    pids = {100, 101}
    for second in range(0, 60, 2):
        clock.now = 1000.0 + second
        _beat(layout, 0, beat=second, progress=second // 2 if second < 10 else 5)  # waits from t=10 in a collective
        if second <= 10:
            _beat(layout, 1, beat=second, progress=second // 2)  # stopped at t=10: nothing more written
        found = watcher.check(pids)
        if clock.now - 1010.0 <= 30.0 + stall.GRACE_SECONDS:
            assert found is None, second
        else:
            assert found is not None and found.ranks == ["1"] and found.silent and found.step == 7
            assert "rank(s) 1 stopped reporting" in found.describe() and "TRAIN_STALL_TIMEOUT" in found.describe()
            return
    raise AssertionError("no stall found")


def test_ranks_that_still_beat_but_make_no_progress_are_all_named(tmp_path: Path, clock: Clock) -> None:
    layout = OutputLayout(tmp_path)
    watcher = StallWatcher(layout)
    for second in range(0, 50, 2):
        clock.now = 1000.0 + second
        for rank in (0, 1):
            _beat(layout, rank, beat=second, progress=3)
        found = watcher.check({100, 101})
    assert found is not None and found.ranks == ["0", "1"] and not found.silent
    assert "still run but made no progress" in found.describe()


def test_other_processes_heartbeats_and_finished_ranks_are_not_watched(tmp_path: Path, clock: Clock) -> None:
    layout = OutputLayout(tmp_path)
    watcher = StallWatcher(layout)
    _beat(layout, 0, beat=1, progress=1, phase="done")
    _beat(layout, 1, beat=1, progress=1, pid=999)  # an earlier run's rank, or another machine's
    _beat(layout, 2, beat=1, progress=1, host="another-node", pid=102)
    watcher.check({100, 101, 102})
    clock.now += 3600
    assert watcher.check({100, 101, 102}) is None


def test_the_timeout_is_the_setting_or_derived_from_the_step_and_save_times(tmp_path: Path) -> None:
    budget = StopBudget(grace_seconds=300)
    watch = StallWatch(OutputLayout(tmp_path), 0.0, budget)
    assert watch.timeout() == STALL_FLOOR_SECONDS
    watch.phase = "saving"
    assert watch.timeout() == FIRST_SAVE_FLOOR_SECONDS  # no save measured yet
    budget.longest_step, budget.longest_save = 100.0, 60.0
    assert watch.timeout() == 5 * 160.0
    assert StallWatch(OutputLayout(tmp_path), 15.0, budget).timeout() == 15.0
