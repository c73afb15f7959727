"""The entrypoint as a user runs it: configuration errors exit 2 with a message that says what to fix."""

from __future__ import annotations

import json
import re

import pytest

from dev.testing import run_entrypoint

DEMO_SFT = "dev/demo_data/sft_messages.jsonl"


@pytest.mark.parametrize(
    ("settings", "expected"),
    [
        pytest.param({"TRAIN_LERNING_RATE": "1e-5"}, "did you mean TRAIN_LEARNING_RATE?", id="typo-did-you-mean"),
        pytest.param({"TRAIN_MAX_STEPS": "abc"}, "TRAIN_MAX_STEPS='abc' is not a valid int", id="not-an-int"),
        pytest.param(
            {"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "-3"},
            "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE=-3 is out of range",
            id="negative-batch-size",
        ),
        pytest.param({"TRAIN_METHOD": "ppo"}, "valid methods: sft, dpo", id="unknown-method"),
        pytest.param({"TRAIN_METHOD": ""}, "TRAIN_METHOD is not set", id="missing-method"),
        pytest.param(
            {"TRAIN_BETA": "0.1"}, "TRAIN_BETA applies to TRAIN_METHOD=dpo or kto only", id="dpo-setting-for-sft"
        ),
        pytest.param({"TRAIN_USE_PEFT": "maybe"}, "expected true or false", id="not-a-bool"),
        pytest.param({"TRAIN_LR_SCHEDULER_TYPE": "cosinus"}, "is not one of: linear, cosine", id="not-a-choice"),
        pytest.param({"TRAIN_LEARNING_RATE": "nan"}, "TRAIN_LEARNING_RATE='nan' is not a valid float", id="nan"),
        pytest.param({"TRAIN_DATA_PATH": ""}, "TRAIN_DATA_PATH is not set", id="missing-data"),
        pytest.param({"TRAIN_EVAL_SPLIT": "0.9"}, "TRAIN_EVAL_SPLIT=0.9 is out of range", id="eval-split-too-big"),
        pytest.param({"TRAIN_ACCELERATE_CONFIG": "zero7"}, "neither a file nor one of: cpu", id="unknown-accelerate"),
        pytest.param({"TRAIN_MODEL_INIT_KWARGS": "{bad"}, "is not valid JSON", id="bad-json"),
        pytest.param({"TRAIN_LOAD_IN_4BIT": "true"}, "needs TRAIN_USE_PEFT=true", id="4bit-without-lora"),
    ],
)
def test_configuration_errors_exit_2_with_a_fix(settings: dict[str, str], expected: str, tmp_path) -> None:
    base = {"TRAIN_METHOD": "sft", "TRAIN_DATA_PATH": DEMO_SFT, "TRAIN_OUTPUT_DIR": str(tmp_path)}
    run = run_entrypoint("validate", **{**base, **settings})
    assert run.returncode == 2, run.stderr
    assert expected in run.stderr
    assert "Traceback" not in run.stderr


def test_every_problem_is_reported_at_once() -> None:  # fails before anything is written
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=DEMO_SFT, TRAIN_MAX_STEPS="x", TRAIN_SEEED="1")
    assert run.returncode == 2
    assert "TRAIN_MAX_STEPS" in run.stderr and "did you mean TRAIN_SEED?" in run.stderr


def test_trl_rejecting_a_combination_is_a_configuration_error(demo_model: str, tmp_path) -> None:
    run = run_entrypoint(
        TRAIN_METHOD="sft", TRAIN_DATA_PATH=DEMO_SFT, TRAIN_MODEL_NAME_OR_PATH=demo_model,
        TRAIN_OUTPUT_DIR=str(tmp_path), TRAIN_LOAD_BEST_MODEL_AT_END="true",
    )  # fmt: skip
    assert run.returncode == 2, run.stderr
    assert "TRL rejected the training settings" in run.stderr and "load_best_model_at_end" in run.stderr
    assert "Traceback" not in run.stderr


def test_help_lists_every_variable_with_type_and_default() -> None:
    run = run_entrypoint("--help")
    assert run.returncode == 0
    variables = re.findall(r"^  (TRAIN_[A-Z0-9_]+)  \[", run.stdout, flags=re.MULTILINE)
    assert len(set(variables)) >= 60
    for name in ("TRAIN_LEARNING_RATE", "TRAIN_BETA", "TRAIN_USE_PEFT", "TRAIN_LOAD_IN_4BIT", "TRAIN_EVAL_SPLIT"):
        assert name in variables
    assert "TRAIN_MAX_GRAD_NORM  [float]  default: 1.0 (job default" in run.stdout


def test_kubernetes_service_links_are_ignored_not_fatal(tmp_path) -> None:
    run = run_entrypoint(
        "validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=DEMO_SFT, TRAIN_OUTPUT_DIR=str(tmp_path),
        TRAIN_API_SERVICE_HOST="10.0.0.1", TRAIN_API_PORT="tcp://10.0.0.1:80", TRAIN_API_PORT_80_TCP_ADDR="10.0.0.1",
    )  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert "enableServiceLinks: false" in run.stderr


def test_validate_writes_a_report_and_trains_nothing(tmp_path) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=DEMO_SFT, TRAIN_OUTPUT_DIR=str(tmp_path),
                         TRAIN_EVAL_SPLIT="0.25")  # fmt: skip
    assert run.returncode == 0, run.stderr
    assert (tmp_path / "validation_report.json").is_file()
    assert not (tmp_path / "final").exists()
    split = json.loads((tmp_path / "validation_report.json").read_text())["split"]
    assert split["train"] + split["eval"] == 400 and 60 < split["eval"] < 140
