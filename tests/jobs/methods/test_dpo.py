"""DPO end to end: plain and conversational pairs, LoRA and full fine-tune; reward margins rise.

Reward accuracy is not asserted: on easy synthetic pairs it jumps to 1.0 after one step (measured on this project's CPU machines).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dev.demo import dpo_records as demo_records
from dev.testing import rises, run_entrypoint, write_jsonl


def _conversational(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": record["prompt"]}],
        "chosen": [{"role": "assistant", "content": record["chosen"]}],
        "rejected": [{"role": "assistant", "content": record["rejected"]}],
    }


DPO_SETTINGS = {"TRAIN_MAX_STEPS": "30", "TRAIN_LOGGING_STEPS": "5", "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "8"}


@pytest.mark.parametrize(
    ("lora", "conversational"),
    [
        pytest.param(True, False, id="lora-plain"),  # in `make test`: one DPO run
        pytest.param(True, True, id="lora-conversational", marks=pytest.mark.slow),
        pytest.param(False, False, id="full-plain", marks=pytest.mark.slow),
        pytest.param(False, True, id="full-conversational", marks=pytest.mark.slow),
    ],
)
def test_dpo_reward_margins_rise(conversational: bool, lora: bool, demo_model: str, tmp_path: Path) -> None:
    records = [_conversational(r) if conversational else r for r in demo_records(240)]
    data = write_jsonl(tmp_path / "pairs.jsonl", records)
    out = tmp_path / "out"
    run = run_entrypoint(
        TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=str(data),
        TRAIN_OUTPUT_DIR=str(out), TRAIN_USE_PEFT=str(lora).lower(),
        TRAIN_LEARNING_RATE="5e-3" if lora else "5e-4", **DPO_SETTINGS,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert rises(run.series("rewards_margins")), run.series("rewards_margins")
    reference = "the policy with its adapter disabled" if lora else "a frozen copy"
    assert f"DPO reference model: {reference}" in run.stderr
    final = out / "final"
    assert (final / ("adapter_model.safetensors" if lora else "model.safetensors")).is_file()
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train/rewards/margins", "train/rewards/chosen", "train/loss"} <= set(events.Tags()["scalars"])
    manifest = json.loads((final / "run_manifest.json").read_text())
    assert manifest["packages"]["trl"] and len(manifest["data"]["sources"][0]["sha256"]) == 64


@pytest.mark.slow
def test_qlora_dpo_uses_the_adapter_disabled_model_as_reference(demo_model: str, tmp_path: Path) -> None:
    data = write_jsonl(tmp_path / "pairs.jsonl", demo_records(240))
    out = tmp_path / "out"
    run = run_entrypoint(
        TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=str(data),
        TRAIN_OUTPUT_DIR=str(out), TRAIN_USE_PEFT="true", TRAIN_LOAD_IN_4BIT="true", TRAIN_LEARNING_RATE="5e-3",
        **DPO_SETTINGS,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    assert "4-bit NF4" in run.stderr
    # No second model in memory: the reference is the same 4-bit model with the adapter disabled.
    assert "DPO reference model: the policy with its adapter disabled" in run.stderr
    assert rises(run.series("rewards_margins")), run.series("rewards_margins")
    assert (out / "final" / "adapter_config.json").is_file()
