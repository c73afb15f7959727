"""KTO end to end: unpaired feedback (plain and conversational) and paired preference files; the reward
margin between desirable and undesirable completions rises; bad settings and data are refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from dev.demo import dpo_records as paired_records
from dev.demo import kto_records as demo_records
from dev.testing import rises, run_entrypoint, write_jsonl


def _conversational(record: dict[str, Any]) -> dict[str, Any]:
    return {
        "prompt": [{"role": "user", "content": record["prompt"]}],
        "completion": [{"role": "assistant", "content": record["completion"]}],
        "label": record["label"],
    }


# KTO's signal is one judged completion at a time: weaker per step than DPO's pairs. Measured on the demo
# model: a full fine-tune at 5e-4 lifts the margin from ~0.01 to ~0.2 in 60 steps (two epochs of 240
# examples); LoRA needs 1e-2 and 90 steps for ~0.1, and at 5e-3 it stayed flat.
FULL = {"TRAIN_USE_PEFT": "false", "TRAIN_LEARNING_RATE": "5e-4", "TRAIN_MAX_STEPS": "60", "TRAIN_LOGGING_STEPS": "5"}
LORA = {"TRAIN_USE_PEFT": "true", "TRAIN_LEARNING_RATE": "1e-2", "TRAIN_MAX_STEPS": "90", "TRAIN_LOGGING_STEPS": "10"}


@pytest.mark.parametrize(
    ("shape", "settings"),
    [
        pytest.param("plain", LORA, id="unpaired-lora", marks=pytest.mark.slow),
        pytest.param("conversational", FULL, id="unpaired-conversational-full"),  # in `make test`: one KTO run
        pytest.param("paired", FULL, id="paired-preference-full", marks=pytest.mark.slow),
    ],
)
def test_kto_reward_margins_rise(shape: str, settings: dict[str, str], demo_model: str, tmp_path: Path) -> None:
    if shape == "paired":
        records = paired_records(120)  # unpaired as TRL does it: 240 examples
    else:
        records = [_conversational(r) if shape == "conversational" else r for r in demo_records(240)]
    data = write_jsonl(tmp_path / "feedback.jsonl", records)
    out = tmp_path / "out"
    run = run_entrypoint(
        TRAIN_METHOD="kto", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH=str(data),
        TRAIN_OUTPUT_DIR=str(out), TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="8", **settings,
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    margins = run.series("rewards_margins")
    assert len(margins) == len(run.series("loss")), "a logging step without both labels in its batches"
    assert rises(margins), margins
    lora = settings["TRAIN_USE_PEFT"] == "true"
    reference = "the policy with its adapter disabled" if lora else "a frozen copy"
    assert f"KTO reference model: {reference}" in run.stderr
    assert (out / "final" / ("adapter_model.safetensors" if lora else "model.safetensors")).is_file()
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    assert {"train/rewards/margins", "train/kl", "train/loss"} <= set(events.Tags()["scalars"])


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "1"}, "too small for KTO", id="batch-of-one"),
        pytest.param({"TRAIN_TRAIN_SAMPLING_STRATEGY": "random"}, "breaks KTO's KL estimate", id="random-sampling"),
        pytest.param({"TRAIN_PACKING": "true"}, "applies to TRAIN_METHOD=sft only", id="sft-setting"),
    ],
)
def test_settings_kto_cannot_use_exit_2_before_any_model_loads(settings: dict[str, str], message: str,
                                                               tmp_path: Path) -> None:  # fmt: skip
    run = run_entrypoint("validate", TRAIN_METHOD="kto", TRAIN_DATA_PATH="dev/demo_data/kto_unpaired.jsonl",
                         TRAIN_OUTPUT_DIR=str(tmp_path), **settings)  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert message in run.stderr


def test_a_loss_without_a_kl_term_may_use_a_batch_of_one(tmp_path: Path) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD="kto", TRAIN_DATA_PATH="dev/demo_data/kto_unpaired.jsonl",
                         TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="1",
                         TRAIN_LOSS_TYPE="apo_zero_unpaired")  # fmt: skip
    assert run.returncode == 0, run.stderr


@pytest.mark.parametrize(
    ("record", "expected"),
    [
        pytest.param({"prompt": "p", "completion": "c", "label": "yes"}, '/label: "yes" is not of type "boolean"',
                     id="label-not-bool"),
        pytest.param({"prompt": "p", "completion": " ", "label": True}, "/completion: empty or whitespace-only",
                     id="empty-completion"),
        pytest.param({"prompt": [{"role": "user", "content": "p"}], "completion": [{"role": "user", "content": "c"}],
                      "label": False}, "/completion/0/role: roles out of order", id="completion-not-assistant"),
        pytest.param({"messages": [{"role": "user", "content": "p"}, {"role": "assistant", "content": "c"}]},
                     "1 records of language modeling data (messages, detected at line 1), but TRAIN_METHOD=kto trains "
                     "on unpaired preference or preference data; set TRAIN_METHOD to sft", id="sft-data"),
    ],
)  # fmt: skip
def test_bad_kto_data_exits_3_naming_the_line(record: dict[str, Any], expected: str, tmp_path: Path) -> None:
    good = {"prompt": "Count on from 1, 3 numbers.", "completion": "2 3 4", "label": True}
    if isinstance(record.get("prompt"), list):
        good = {"prompt": [{"role": "user", "content": "Count on from 1, 3 numbers."}],
                "completion": [{"role": "assistant", "content": "2 3 4"}], "label": True}  # fmt: skip
    data = write_jsonl(tmp_path / "feedback.jsonl", [good, record] if "messages" not in record else [record])
    run = run_entrypoint(
        "validate", TRAIN_METHOD="kto", TRAIN_DATA_PATH=str(data), TRAIN_OUTPUT_DIR=str(tmp_path / "o")
    )
    assert run.returncode == 3, run.stderr
    assert expected in run.messages(), run.stderr[-2000:]


@pytest.mark.slow
def test_two_gloo_ranks_unpair_and_shuffle_the_same_records(demo_model: str, tmp_path: Path) -> None:
    # Every rank prepares the records at once: in memory, so no two ranks race for one cache file.
    run = run_entrypoint(
        TRAIN_METHOD="kto", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH="dev/demo_data/dpo_pairs.jsonl",
        TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_ACCELERATE_CONFIG="multi_cpu", TRAIN_MAX_STEPS="10",
        TRAIN_LOGGING_STEPS="5", TRAIN_LEARNING_RATE="5e-4",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr[-3000:]
    manifest = json.loads((tmp_path / "final" / "run_manifest.json").read_text())
    assert manifest["world_size"] == 2 and manifest["global_step"] == 10
    assert len(run.series("rewards_margins")) == 2  # both labels in the batches of both logging steps
