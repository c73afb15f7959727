"""Sizes read from safetensors headers, before any weight loads, against what a real run writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from dev.testing import run_entrypoint
from jobs.estimate.formula import checkpoint_bytes, read_tensors


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
