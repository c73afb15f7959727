"""Preflight: environment problems exit 4 with the path and the fix, before any model loads."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from dev.testing import run_entrypoint
from jobs.errors import EnvironmentProblem
from jobs.preflight.checks import check_model_dir
from tests.support.volumes import tmpfs

DEMO_SFT = "dev/demo_data/sft_messages.jsonl"


def _model_without(tmp_path: Path, demo_model: str, *missing: str) -> str:
    model = tmp_path / "model"
    model.mkdir()
    for item in Path(demo_model).iterdir():
        if item.name not in missing:
            (model / item.name).write_bytes(item.read_bytes())
    return str(model)


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        pytest.param("missing-model", "is not a directory", id="missing-model"),
        pytest.param("no-config", "has no config.json", id="no-config"),
        pytest.param("no-weights", "holds no weights", id="no-weights"),
        pytest.param("no-tokenizer", "has no tokenizer", id="no-tokenizer"),
        pytest.param("unwritable-output", "is not writable", id="unwritable-output"),
    ],
)
def test_environment_problems_exit_4(case: str, expected: str, demo_model: str, tmp_path: Path) -> None:
    model, output = demo_model, str(tmp_path / "out")
    if case == "missing-model":
        model = str(tmp_path / "nowhere")
    elif case == "no-config":
        model = _model_without(tmp_path, demo_model, "config.json")
    elif case == "no-weights":
        model = _model_without(tmp_path, demo_model, "model.safetensors")
    elif case == "no-tokenizer":
        model = _model_without(tmp_path, demo_model, "tokenizer.json", "tokenizer_config.json")
    else:
        (tmp_path / "a-file").write_text("")
        output = str(tmp_path / "a-file" / "out")  # a path under a file cannot be created, even by root
    run = run_entrypoint(TRAIN_METHOD="sft", TRAIN_DATA_PATH=DEMO_SFT, TRAIN_MODEL_NAME_OR_PATH=model,
                         TRAIN_OUTPUT_DIR=output)  # fmt: skip
    assert run.returncode == 4, run.stderr
    assert expected in run.stderr
    assert "Traceback" not in run.stderr


def test_a_model_file_this_user_cannot_read_is_named_with_the_fix(
    demo_model: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Weights another user wrote 0600 (safetensors' mode; an initializer running as root) fail before the
    model loads (the entrypoint turns this error into exit 4). Root reads any file, so as root the
    permission check is stood in for; as any other user the file really is unreadable."""
    model = Path(_model_without(tmp_path, demo_model))
    weights = model / "model.safetensors"
    if os.getuid() == 0:
        real_access = os.access
        monkeypatch.setattr(os, "access", lambda path, mode: Path(path) != weights and real_access(path, mode))
    else:
        weights.chmod(0)
    with pytest.raises(EnvironmentProblem) as caught:
        check_model_dir(str(model))
    assert "1 file(s) this process" in str(caught.value) and "model.safetensors" in str(caught.value)
    assert "chmod -R a+rX" in str(caught.value)


def test_missing_data_file_exits_4(tmp_path: Path) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD="sft", TRAIN_DATA_PATH=str(tmp_path / "none.jsonl"),
                         TRAIN_OUTPUT_DIR=str(tmp_path / "o"))  # fmt: skip
    assert run.returncode == 4
    assert "does not exist" in run.stderr


@pytest.fixture
def tiny_volume(tmp_path: Path) -> Iterator[Path]:
    """A 4 MB tmpfs standing in for a nearly full output volume (mounting needs root)."""
    with tmpfs(tmp_path / "volume", "4m") as volume:
        yield volume


def test_a_volume_without_room_for_two_checkpoints_exits_4_with_the_numbers(demo_model: str, tiny_volume: Path) -> None:
    run = run_entrypoint(TRAIN_METHOD="sft", TRAIN_DATA_PATH=DEMO_SFT, TRAIN_MODEL_NAME_OR_PATH=demo_model,
                         TRAIN_OUTPUT_DIR=str(tiny_volume / "run"))  # fmt: skip
    assert run.returncode == 4, run.stderr[-2000:]
    assert "free, but a checkpoint of this full float32 fine-tune (weights and AdamW states) takes about 5.6 MB" in (
        run.stderr
    )
    assert "train LoRA (TRAIN_USE_PEFT=true)" in run.stderr and "loaded" not in run.stderr  # before the model loads
    lora = run_entrypoint(TRAIN_METHOD="sft", TRAIN_DATA_PATH=DEMO_SFT, TRAIN_MODEL_NAME_OR_PATH=demo_model,
                          TRAIN_OUTPUT_DIR=str(tiny_volume / "lora"), TRAIN_USE_PEFT="true", TRAIN_MAX_STEPS="2",
                          TRAIN_SAVE_STEPS="2")  # fmt: skip
    assert lora.returncode == 0, lora.stderr[-2000:]  # the adapter's 0.9 MB checkpoint fits twice


@pytest.mark.parametrize("trackers", ["wandb", "tensorboard,mlflow"])
def test_a_tracker_whose_package_is_missing_is_exit_2_before_the_model_loads(
    trackers: str, demo_model: str, tmp_path: Path
) -> None:
    """wandb and mlflow are not in the image: transformers failed on them only after the model had loaded."""
    run = run_entrypoint(TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_REPORT_TO=trackers,
                         TRAIN_DATA_PATH="dev/demo_data/sft_messages.jsonl", TRAIN_OUTPUT_DIR=str(tmp_path / "out"))  # fmt: skip
    assert run.returncode == 2, run.stderr[-2000:]
    missing = trackers.rsplit(",", maxsplit=1)[-1]
    assert f"{missing}: its package is not installed in this image" in run.stderr
    assert "Traceback" not in run.stderr and "loaded" not in run.messages()
