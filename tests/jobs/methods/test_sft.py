"""SFT end to end: the real entrypoint trains the demo model on every TRL data format, and the loss falls."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from dev.demo import sft_records as demo_records
from dev.testing import falls, run_entrypoint, write_jsonl


def _as_format(record: dict[str, Any], name: str) -> dict[str, Any]:
    user, assistant = record["messages"]
    if name == "messages":
        return record
    if name == "text":
        return {"text": f"{user['content']} Answer: {assistant['content']}"}
    if name == "prompt_completion":
        return {"prompt": user["content"], "completion": " " + assistant["content"]}
    return {"prompt": [user], "completion": [assistant]}  # conversational prompt/completion


SFT_SETTINGS = {"TRAIN_MAX_STEPS": "40", "TRAIN_LOGGING_STEPS": "5", "TRAIN_LEARNING_RATE": "2e-3",
                "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "8"}  # fmt: skip


@pytest.mark.parametrize(
    "data_format",
    [
        pytest.param("text", marks=pytest.mark.slow),
        "messages",  # in `make test`: one SFT run
        pytest.param("prompt_completion", marks=pytest.mark.slow),
        pytest.param("conversational_prompt_completion", marks=pytest.mark.slow),
    ],
)
def test_sft_loss_falls_on_every_format(data_format: str, demo_model: str, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", [_as_format(r, data_format) for r in demo_records(200)])
    out = tmp_path / "out"
    run = run_entrypoint(
        TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=str(data),
        TRAIN_OUTPUT_DIR=str(out), **SFT_SETTINGS,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert falls(run.series("loss")), run.series("loss")
    assert (out / "final" / "model.safetensors").is_file()
    assert (out / "final" / "tokenizer.json").is_file()


@pytest.mark.slow
def test_qlora_sft_trains_a_4bit_model_on_cpu(demo_model: str, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "train.jsonl", demo_records(200))
    out = tmp_path / "out"
    run = run_entrypoint(
        TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=str(data),
        TRAIN_OUTPUT_DIR=str(out), TRAIN_USE_PEFT="true", TRAIN_LOAD_IN_4BIT="true", TRAIN_LORA_R="16",
        # Whole-sequence loss: in 40 steps a LoRA adapter on the random demo model learns the prompts' fixed
        # words, not yet the counts that assistant-only loss (the default) would judge it on.
        **{**SFT_SETTINGS, "TRAIN_LEARNING_RATE": "5e-3", "TRAIN_ASSISTANT_ONLY_LOSS": "false"},
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "4-bit NF4" in run.stderr
    assert falls(run.series("loss")), run.series("loss")
    assert (out / "final" / "adapter_model.safetensors").is_file()
