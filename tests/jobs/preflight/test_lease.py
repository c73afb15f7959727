"""One writer per output directory (jobs/preflight/lease.py): real processes, a real lease file."""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from dev.testing import ROOT, clean_env, run_entrypoint
from jobs.errors import WriterBusy
from jobs.preflight.lease import LEASE_FILE, RENEW_SECONDS, acquire

DEMO_SFT = str(ROOT / "dev" / "demo_data" / "sft_messages.jsonl")


def _dead_holders_lease(directory: Path) -> Path:
    path = directory / LEASE_FILE
    path.write_text(json.dumps({"run_id": "gone", "host": "node-7", "pid": 1, "started": "then", "token": "dead",
                                "counter": 41}))  # fmt: skip
    return path


def test_a_live_holder_keeps_its_lease_and_a_dead_ones_is_taken_over(tmp_path: Path) -> None:
    live = acquire(tmp_path, "first", stale_seconds=30, on_lost=lambda reason: None)
    try:
        with pytest.raises(WriterBusy, match=r"run first \(host .*\) holds .* and renews it"):
            acquire(tmp_path, "second", stale_seconds=30, on_lost=lambda reason: None)
    finally:
        live.release()
    assert not (tmp_path / LEASE_FILE).exists()  # released by its holder
    lease_file = _dead_holders_lease(tmp_path)
    taken = acquire(tmp_path, "third", stale_seconds=1, on_lost=lambda reason: None)
    assert json.loads(lease_file.read_text())["run_id"] == "third"
    taken.release()


def test_a_holder_that_finds_its_lease_taken_over_is_told(tmp_path: Path) -> None:
    lost = threading.Event()
    reasons: list[str] = []
    lease = acquire(tmp_path, "frozen", stale_seconds=30, on_lost=lambda reason: (reasons.append(reason), lost.set()))
    _dead_holders_lease(tmp_path)  # what another job's takeover writes
    assert lost.wait(5 * RENEW_SECONDS)
    assert "was taken over by run gone (host node-7" in reasons[0]
    lease.release()
    assert (tmp_path / LEASE_FILE).exists()  # the new holder's, not released by the old one


def test_validate_takes_over_a_lease_left_by_a_killed_job(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    _dead_holders_lease(out)
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=DEMO_SFT, TRAIN_OUTPUT_DIR=str(out),
                         TRAIN_LOCK_STALE_SECONDS="1")  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    assert "taking over the lease of run gone (host node-7, pid 1, started then): its holder is gone" in run.stderr
    assert not (out / LEASE_FILE).exists()


@pytest.mark.slow
def test_a_second_job_on_the_same_output_exits_7_and_the_first_is_untouched(demo_model: str, tmp_path: Path) -> None:
    """A duplicate submission, or a replacement pod while the old one still trains."""
    out = tmp_path / "out"
    settings = {"TRAIN_METHOD": "sft", "TRAIN_MODEL_NAME_OR_PATH": demo_model, "TRAIN_DATA_PATH": DEMO_SFT,
                "TRAIN_OUTPUT_DIR": str(out)}  # fmt: skip
    log = tmp_path / "first.log"
    with log.open("w") as handle:
        first = subprocess.Popen([sys.executable, "entrypoint.py"], cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT,
                                 env=clean_env(**settings, TRAIN_MAX_STEPS="150", TRAIN_SAVE_STEPS="20"))  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while '"training sft on' not in log.read_text() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        holder = json.loads((out / LEASE_FILE).read_text())
        second = run_entrypoint(**settings, TRAIN_MAX_STEPS="5")
        assert first.poll() is None, "the first job ended before the second started: the test proves nothing"
        assert second.returncode == 7, second.stderr[-2000:]
        assert f"run {holder['run_id']} (host {holder['host']}, pid {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr
        assert first.wait(timeout=600) == 0, log.read_text()[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
    assert (out / "final").is_dir() and not (out / LEASE_FILE).exists()
    history = json.loads((out / "final" / "log_history.json").read_text())
    assert max(entry.get("step", 0) for entry in history) == 150  # the first job's own run, to its end


def test_a_holder_on_this_host_whose_process_is_gone_is_taken_over_at_once(tmp_path: Path) -> None:
    """A restart in the same pod after a SIGKILL (the OOM killer) does not wait out TRAIN_LOCK_STALE_SECONDS."""
    gone = subprocess.Popen(["true"])
    gone.wait()
    (tmp_path / LEASE_FILE).write_text(json.dumps({"run_id": "killed", "host": socket.gethostname(), "pid": gone.pid,
                                                   "started": "then", "token": "old", "counter": 3}))  # fmt: skip
    lease = acquire(tmp_path, "restart", stale_seconds=3600, on_lost=lambda reason: None)
    assert json.loads((tmp_path / LEASE_FILE).read_text())["run_id"] == "restart"
    lease.release()
