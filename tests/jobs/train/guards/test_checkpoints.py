"""Checkpoints: only complete ones, whose files match their marker, are resumed from."""

from __future__ import annotations

import errno
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.testing import ROOT, clean_env, run_entrypoint
from jobs.integrity import checksums, damage, list_checkpoint, set_aside_damaged, write_marker
from jobs.layout import COMPLETE_MARKER, OutputLayout
from jobs.train.guards.checkpoints import is_volume_full, latest_complete_checkpoint
from tests.support.volumes import tmpfs


def _checkpoint(root: Path, step: int, complete: bool) -> Path:
    directory = root / f"checkpoint-{step}"
    directory.mkdir(parents=True)
    if complete:
        (directory / COMPLETE_MARKER).write_text(str(step))
    return directory


def test_newest_complete_checkpoint_wins_and_incomplete_ones_are_skipped(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 5, complete=True)
    newest_complete = _checkpoint(tmp_path, 10, complete=True)
    _checkpoint(tmp_path, 15, complete=False)  # a pod killed mid-save leaves this
    (tmp_path / "checkpoint-x").mkdir()
    assert latest_complete_checkpoint(OutputLayout(tmp_path)) == newest_complete


def test_no_checkpoint_means_a_fresh_start(tmp_path: Path) -> None:
    assert latest_complete_checkpoint(OutputLayout(tmp_path)) is None
    assert latest_complete_checkpoint(OutputLayout(tmp_path / "missing")) is None


def _saving_every_5_steps(demo_model: str, output: Path) -> dict[str, str]:
    return {
        "TRAIN_METHOD": "sft", "TRAIN_MODEL_NAME_OR_PATH": demo_model,
        "TRAIN_DATA_PATH": "dev/demo_data/sft_messages.jsonl", "TRAIN_OUTPUT_DIR": str(output),
        "TRAIN_SAVE_STEPS": "5", "TRAIN_LOGGING_STEPS": "5", "TRAIN_LEARNING_RATE": "2e-3",
    }  # fmt: skip


def test_a_second_run_resumes_from_the_last_complete_checkpoint(demo_model: str, tmp_path: Path) -> None:
    settings = _saving_every_5_steps(demo_model, tmp_path)
    first = run_entrypoint(TRAIN_MAX_STEPS="10", **settings)
    assert first.returncode == 0, first.stderr[-3000:]
    assert (tmp_path / "checkpoint-10" / COMPLETE_MARKER).is_file()
    second = run_entrypoint(TRAIN_MAX_STEPS="20", **settings)
    assert second.returncode == 0, second.stderr[-3000:]
    assert f"resuming from {tmp_path / 'checkpoint-10'}" in second.stderr
    steps = [entry["step"] for entry in second.logs() if "loss" in entry and "train_runtime" not in entry]
    assert steps and min(steps) > 10  # steps 1-10 were not trained again
    assert len([p for p in tmp_path.iterdir() if p.name.startswith("final.")]) == 1  # first final kept


def _marked(root: Path, step: int, files: dict[str, bytes]) -> Path:
    directory = root / f"checkpoint-{step}"
    for name, content in files.items():
        (directory / name).parent.mkdir(parents=True, exist_ok=True)
        (directory / name).write_bytes(content)
    listing = list_checkpoint(directory)
    write_marker(directory, step, checksums(directory, listing.files))
    return directory


def test_by_unit_a_marker_records_each_file_and_finds_it_missing_resized_or_changed(tmp_path: Path) -> None:
    directory = _marked(tmp_path, 5, {"model.safetensors": b"w" * 1000, "global_step5/zero_pp_rank_1.pt": b"z" * 10})
    assert damage(directory) == []
    (directory / "global_step5" / "zero_pp_rank_1.pt").write_bytes(b"y" * 10)  # same size, other bytes
    assert damage(directory) == ["global_step5/zero_pp_rank_1.pt changed since it was saved (checksum)"]
    with open(directory / "model.safetensors", "r+b") as handle:
        handle.truncate(600)
    assert "model.safetensors has 600 bytes, 1000 when saved" in damage(directory)
    (directory / "model.safetensors").unlink()
    assert "model.safetensors is missing" in damage(directory)
    (directory / COMPLETE_MARKER).write_text("{not json")
    assert "cannot be read" in damage(directory)[0]


def test_by_unit_the_shares_split_the_bytes_evenly_and_cover_every_file(tmp_path: Path) -> None:
    directory = _marked(tmp_path, 1, {f"f{i}": b"x" * (i * 100) for i in range(1, 9)})
    listing = list_checkpoint(directory)
    shares = listing.shares(3)
    assert sorted(name for share in shares for name in share) == sorted(listing.files)
    loads = [sum(listing.files[name] for name in share) for share in shares]
    assert max(loads) - min(loads) <= 800  # at most the largest file apart
    assert listing.shares(1) == [sorted(listing.files, key=lambda n: (-listing.files[n], n))]


def test_by_unit_damaged_checkpoints_are_set_aside_newest_first_until_one_matches(tmp_path: Path) -> None:
    layout = OutputLayout(tmp_path)
    oldest = _marked(tmp_path, 5, {"model.safetensors": b"a" * 100})
    (oldest / "model.safetensors").write_bytes(b"b" * 100)  # damaged too, but older than the one that matches
    good = _marked(tmp_path, 10, {"model.safetensors": b"a" * 100})
    damaged = _marked(tmp_path, 15, {"model.safetensors": b"a" * 100})
    (damaged / "model.safetensors").write_bytes(b"a" * 50)
    legacy = _checkpoint(tmp_path, 20, complete=True)  # a marker holding the step alone: not checked
    assert set_aside_damaged(layout) == []
    legacy.rename(tmp_path / "elsewhere")
    assert set_aside_damaged(layout) == [tmp_path / "damaged-checkpoint-15"]
    assert latest_complete_checkpoint(layout) == good and oldest.is_dir()


@pytest.mark.slow
def test_a_checkpoint_damaged_after_its_save_is_set_aside_and_the_run_resumes_from_the_previous_one(
    demo_model: str, tmp_path: Path
) -> None:
    settings = _saving_every_5_steps(demo_model, tmp_path)
    first = run_entrypoint(TRAIN_MAX_STEPS="10", **settings)
    assert first.returncode == 0, first.stderr[-3000:]
    weights = tmp_path / "checkpoint-10" / "model.safetensors"
    marker = json.loads((tmp_path / "checkpoint-10" / COMPLETE_MARKER).read_text())
    assert marker["step"] == 10 and marker["files"]["model.safetensors"]["size"] == weights.stat().st_size
    assert {"optimizer.pt", "trainer_state.json", "rng_state.pth"} <= set(marker["files"])
    with open(weights, "r+b") as handle:  # what a copy or sync that died leaves behind
        handle.truncate(weights.stat().st_size // 2)
    second = run_entrypoint(TRAIN_MAX_STEPS="20", **settings)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "Traceback" not in second.stderr
    assert f"set aside {tmp_path / 'checkpoint-10'} as {tmp_path / 'damaged-checkpoint-10'}" in second.stderr
    assert "model.safetensors has " in second.stderr and (tmp_path / "damaged-checkpoint-10").is_dir()
    assert f"resuming from {tmp_path / 'checkpoint-5'}" in second.stderr
    assert (tmp_path / "final" / "model.safetensors").is_file()


@pytest.mark.slow
def test_a_process_killed_while_writing_a_checkpoint_resumes_from_the_previous_one(demo_model: str,
                                                                                  tmp_path: Path) -> None:  # fmt: skip
    settings = {
        "TRAIN_METHOD": "sft", "TRAIN_MODEL_NAME_OR_PATH": demo_model,
        "TRAIN_DATA_PATH": "dev/demo_data/sft_messages.jsonl", "TRAIN_OUTPUT_DIR": str(tmp_path),
        "TRAIN_SAVE_STEPS": "10", "TRAIN_LOGGING_STEPS": "1", "TRAIN_MAX_STEPS": "30", "TRAIN_LEARNING_RATE": "2e-3",
    }  # fmt: skip
    process = subprocess.Popen([sys.executable, "entrypoint.py"], cwd=ROOT, env=clean_env(**settings),
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        assert process.stderr is not None
        for line in process.stderr:
            if '"step": 1,' in line and '"loss"' in line:
                # A write that never finishes: checkpoint-20 gets its weights, then its optimizer file is a FIFO
                # nobody reads, so the save blocks there (made once training runs: a start sets aside what it finds).
                (tmp_path / "checkpoint-20").mkdir()
                os.mkfifo(tmp_path / "checkpoint-20" / "optimizer.pt")
            if '"step": 20,' in line and '"loss"' in line:  # step 20 done: its save is under way, and blocks
                break
        time.sleep(2)
        assert process.poll() is None, "the save did not block"
        process.kill()  # SIGKILL: no handler runs
        assert process.wait(timeout=30) == -signal.SIGKILL
    finally:
        if process.poll() is None:
            process.kill()
    assert (tmp_path / "checkpoint-10" / COMPLETE_MARKER).is_file()
    assert not (tmp_path / "checkpoint-20" / COMPLETE_MARKER).exists()

    resumed = run_entrypoint(**settings)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {tmp_path / 'checkpoint-10'}" in resumed.stderr
    assert (tmp_path / "incomplete-checkpoint-20").is_dir() and "set aside" in resumed.stderr
    assert (tmp_path / "final" / "model.safetensors").is_file()


@pytest.fixture
def small_volume(tmp_path: Path) -> Iterator[Path]:
    """A real 24 MiB tmpfs: room for the preflight's two checkpoints of the demo model, not for more."""
    with tmpfs(tmp_path / "volume", "24m") as volume:
        yield volume


def test_by_unit_a_full_volume_is_recognised_however_the_writer_says_it(tmp_path: Path) -> None:
    assert is_volume_full(OSError(errno.ENOSPC, "No space left on device"), tmp_path)
    wrapped = RuntimeError("save failed")
    wrapped.__cause__ = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
    assert is_volume_full(wrapped, tmp_path)
    assert not is_volume_full(OSError(errno.EACCES, "Permission denied"), tmp_path)
    # torch's zip writer gives no errno: judged by the room left, which this volume has
    assert not is_volume_full(RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed"),
                              tmp_path)  # fmt: skip


@pytest.mark.slow
def test_a_volume_that_fills_during_training_is_exit_4_and_the_restart_resumes(
    demo_model: str, small_volume: Path
) -> None:
    out = small_volume / "out"
    settings = {"TRAIN_METHOD": "sft", "TRAIN_MODEL_NAME_OR_PATH": demo_model, "TRAIN_OUTPUT_DIR": str(out),
                "TRAIN_DATA_PATH": str(ROOT / "dev" / "demo_data" / "sft_messages.jsonl"), "TRAIN_SAVE_STEPS": "5"}  # fmt: skip
    full = run_entrypoint(**settings, TRAIN_MAX_STEPS="200", TRAIN_SAVE_TOTAL_LIMIT="100")
    assert full.returncode == 4, full.stderr[-3000:]
    assert "Traceback" not in full.stderr
    layout = OutputLayout(out)
    steps = [step for step, _ in layout.checkpoints()]
    newest = latest_complete_checkpoint(layout)
    assert newest is not None and steps[-1] > int(newest.name.split("-")[1])  # the one being written: unmarked
    assert (f"the output volume {small_volume} (TRAIN_OUTPUT_DIR={out}) is full: " in full.stderr
            and " free, and a checkpoint of this run takes " in full.stderr
            and f"checkpoint-{steps[-1]} was left incomplete" in full.stderr)  # fmt: skip
    for _step, directory in layout.checkpoints():  # room again: the older checkpoints go
        if directory != newest and layout.is_complete(directory):
            shutil.rmtree(directory)
    resumed = run_entrypoint(**settings, TRAIN_MAX_STEPS=str(int(newest.name.split("-")[1]) + 10),
                             TRAIN_SAVE_TOTAL_LIMIT="1")  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resuming from {newest}" in resumed.messages() and (out / "final").is_dir()
