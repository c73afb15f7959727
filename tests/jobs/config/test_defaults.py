"""One home for defaults: the user's settings win, the device decides what must depend on it, and --help
shows what will apply here."""

from __future__ import annotations

import pytest

from dev.testing import run_entrypoint
from jobs.config.defaults import (
    QLORA_DEFAULTS,
    TRAINING_DEFAULTS,
    Device,
    default_for,
    device_defaults,
    model_settings,
    training_settings,
)

CPU, BF16_GPU, OLD_GPU = Device(gpu=False, bf16=False), Device(gpu=True, bf16=True), Device(gpu=True, bf16=False)


@pytest.mark.parametrize(
    ("device", "expected"),
    [
        pytest.param(CPU, {"use_cpu": True, "bf16": False, "fp16": False, "activation_checkpointing": False}, id="cpu"),
        pytest.param(BF16_GPU, {"use_cpu": False, "bf16": True, "fp16": False, "activation_checkpointing": True},
                     id="bf16-gpu"),
        pytest.param(OLD_GPU, {"use_cpu": False, "bf16": False, "fp16": True, "activation_checkpointing": True},
                     id="gpu-without-bf16"),
    ],
)  # fmt: skip
def test_device_defaults(device: Device, expected: dict[str, bool]) -> None:
    assert expected.items() <= device_defaults(device).items()
    assert model_settings(device, {})["dtype"] == ("bfloat16" if device.bf16 else "float32")


def test_the_users_settings_win_over_every_default() -> None:
    settings = training_settings(BF16_GPU, has_eval=True, overrides={"max_grad_norm": 0.5, "bf16": False})
    assert settings["max_grad_norm"] == 0.5 and settings["bf16"] is False
    assert settings["lr_scheduler_type"] == TRAINING_DEFAULTS["lr_scheduler_type"]
    assert settings["eval_strategy"] == "steps" and settings["eval_steps"] == TRAINING_DEFAULTS["save_steps"]
    assert "eval_strategy" not in training_settings(CPU, has_eval=False, overrides={})


def test_the_old_checkpointing_name_means_the_new_one() -> None:
    settings = training_settings(CPU, has_eval=False, overrides={"gradient_checkpointing": True})
    assert settings["activation_checkpointing"] is True


def test_lora_targets_every_linear_layer_unless_the_user_says_otherwise() -> None:
    assert model_settings(CPU, {"use_peft": True})["lora_target_modules"] == ["all-linear"]
    assert model_settings(CPU, {"use_peft": True, "lora_target_modules": ["q_proj"]})["lora_target_modules"] == [
        "q_proj"
    ]
    assert "lora_target_modules" not in model_settings(CPU, {})


def test_qlora_defaults_apply_only_to_4bit_loads_and_yield_to_the_user() -> None:
    assert model_settings(CPU, {"load_in_4bit": True}).items() >= QLORA_DEFAULTS.items()
    assert "bnb_4bit_quant_type" not in model_settings(CPU, {})
    assert model_settings(CPU, {"load_in_4bit": True, "bnb_4bit_quant_type": "fp4"})["bnb_4bit_quant_type"] == "fp4"


def test_help_labels_say_when_a_default_applies() -> None:
    assert default_for("bf16", "training", CPU) == (False, "on this machine (CPU)")
    assert default_for("dtype", "model", BF16_GPU) == ("bfloat16", "on this machine (GPU with bf16)")
    assert default_for("use_bnb_nested_quant", "model", CPU) == (True, "with TRAIN_LOAD_IN_4BIT")
    assert default_for("eval_steps", "training", CPU) == (100, "with evaluation data")
    assert default_for("beta", "dpo", CPU) is None  # TRL's own default stands


def test_the_cheap_probe_agrees_with_torch_on_this_machine() -> None:
    # --help must not import torch, so it asks NVML; the training process asks torch. Both must agree
    # (on a GPU machine too: this is the real NVML and CUDA path there, no mock).
    assert Device.probe_cheaply() == Device.probe_torch()


def test_help_shows_the_value_for_this_machine() -> None:
    run = run_entrypoint("--help")
    here = Device.probe_torch().description
    assert f"TRAIN_BF16  [bool, empty for none]  default: {Device.probe_torch().bf16} (on this machine ({here})" in (
        run.stdout
    )
