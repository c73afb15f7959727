"""A training process as a user sees its output directory: secrets never reach it."""

from __future__ import annotations

from pathlib import Path

import pytest

from dev.testing import run_entrypoint

SECRETS = {"TRAIN_HUB_TOKEN": "hf_trainjobTestSecret0001", "HF_TOKEN": "hf_trainjobTestSecret0002"}


@pytest.mark.slow
def test_no_secret_reaches_any_byte_under_the_output_directory(demo_model: str, tmp_path: Path) -> None:
    run = run_entrypoint(
        TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl",
        TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_MAX_STEPS="6", TRAIN_SAVE_STEPS="3", TRAIN_USE_PEFT="true",
        TRAIN_LOG_FORMAT="text", **SECRETS,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    written = [path for path in tmp_path.rglob("*") if path.is_file()]
    assert any(path.name == "training_args.bin" for path in written)  # the pickle that used to carry the token
    assert (tmp_path / "train.log").is_file() and (tmp_path / "final" / "effective_config.json").is_file()
    for path in written:
        content = path.read_bytes()
        for value in SECRETS.values():
            assert value.encode() not in content, f"{value} found in {path}"
    assert not any(value in run.stderr + run.stdout for value in SECRETS.values())
