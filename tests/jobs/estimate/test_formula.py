"""Sizes read from safetensors headers, before any weight loads, against what a real run writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dev.testing import run_entrypoint
from jobs.estimate.formula import checkpoint_bytes, read_tensors
from jobs.estimate.loading import (
    LOADING_FLOOR_SECONDS,
    READ_BYTES_PER_SECOND,
    SECONDS_PER_RECORD,
    loading_threshold,
    process_group_timeout,
    weight_bytes,
)


def _size(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.iterdir() if path.is_file())


@pytest.mark.slow
@pytest.mark.parametrize("lora", [False, True], ids=["full", "lora"])
def test_the_checkpoint_estimate_is_within_10_percent_of_a_real_checkpoint(lora: bool, demo_model: str,
                                                                          tmp_path: Path) -> None:  # fmt: skip
    run = run_entrypoint(TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model,
                         TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl", TRAIN_OUTPUT_DIR=str(tmp_path),
                         TRAIN_MAX_STEPS="2", TRAIN_SAVE_STEPS="2", TRAIN_USE_PEFT=str(lora).lower())  # fmt: skip
    assert run.returncode == 0, run.stderr[-2000:]
    written = _size(tmp_path / "checkpoint-2")
    estimate = checkpoint_bytes(read_tensors(Path(demo_model)), lora_rank=16 if lora else None, train_dtype="float32")
    assert 0.9 < estimate / written < 1.1, (estimate, written)


def test_no_header_means_no_estimate(tmp_path: Path) -> None:
    (tmp_path / "pytorch_model.bin").write_bytes(b"")
    assert read_tensors(tmp_path) == []


def test_the_loading_threshold_grows_with_the_weights_and_the_records(demo_model: str) -> None:
    weights = weight_bytes(Path(demo_model))
    assert weights > 0 and weight_bytes(Path(demo_model) / "missing") == 0
    derived = loading_threshold(0.0, Path(demo_model), 200_000)
    assert derived == LOADING_FLOOR_SECONDS + weights / READ_BYTES_PER_SECOND + 200_000 * SECONDS_PER_RECORD
    assert loading_threshold(42.0, Path(demo_model), 200_000) == 42.0
    assert process_group_timeout(derived) == 2600 and process_group_timeout(60.0) == 1800
