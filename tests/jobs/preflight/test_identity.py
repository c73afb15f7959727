"""Resume only into the same run: a restart with other settings or data exits 2 naming what changed;
run length may change; TRAIN_RESUME=force resumes anyway and never starts over."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dev.testing import run_entrypoint, write_jsonl
from jobs.config.defaults import Device
from jobs.config.resolved import resolve
from jobs.config.settings import load_config
from jobs.errors import ConfigError
from jobs.layout import COMPLETE_MARKER
from jobs.preflight.identity import changes, check_resume, run_identity


def test_changes_name_the_variable_and_both_values() -> None:
    recorded = {"method": "sft", "model": "/m", "settings": {"learning_rate": 0.002, "seed": 1},
                "data_sha256": {"train": "a" * 64}}  # fmt: skip
    current = {"method": "sft", "model": "/m", "settings": {"learning_rate": 0.001, "lora_r": 8},
               "data_sha256": {"train": "b" * 64}}  # fmt: skip
    assert changes(recorded, current) == [
        "TRAIN_LEARNING_RATE: 0.002 then, 0.001 now",
        "TRAIN_LORA_R: unset then, 8 now",
        "TRAIN_SEED: 1 then, unset now",
        "the train data: its validated records differ (sha256 bbbbbbbbbbbb...)",
    ]
    assert changes(recorded, recorded) == []


def test_a_run_started_before_the_rename_is_checked_against_its_run_manifest(tmp_path: Path) -> None:
    """Runs that started before run_identity.json recorded their identity as run_manifest.json."""
    env = {"TRAIN_METHOD": "sft", "TRAIN_DATA_PATH": "d.jsonl", "TRAIN_OUTPUT_DIR": str(tmp_path),
           "TRAIN_LEARNING_RATE": "1e-3"}  # fmt: skip
    run = resolve(load_config(env), Device(gpu=False, bf16=False))
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / COMPLETE_MARKER).write_text("5")
    prepared = {"prepared": {"train": {"sha256": "a" * 64}}}
    legacy = {**run_identity(run, prepared), "settings": {"learning_rate": 0.002}}
    (tmp_path / "run_manifest.json").write_text(json.dumps(legacy))
    with pytest.raises(ConfigError) as refused:
        check_resume(run, prepared)
    assert "TRAIN_LEARNING_RATE: 0.002 then, 0.001 now" in refused.value.report()
    (tmp_path / "run_manifest.json").write_text(json.dumps(run_identity(run, prepared)))
    check_resume(run, prepared)  # unchanged: resumes, and records the identity under its new name
    assert json.loads((tmp_path / "run_identity.json").read_text())["settings"] == {"learning_rate": 0.001}


def test_a_record_that_does_not_read_is_exit_2_unless_forced(tmp_path: Path) -> None:
    """A volume that filled while the record was written (before it was written whole, then renamed)."""
    env = {"TRAIN_METHOD": "sft", "TRAIN_DATA_PATH": "d.jsonl", "TRAIN_OUTPUT_DIR": str(tmp_path)}
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / COMPLETE_MARKER).write_text("5")
    (tmp_path / "run_identity.json").write_text('{"method": "sf')
    prepared = {"prepared": {"train": {"sha256": "a" * 64}}}
    with pytest.raises(ConfigError, match="does not read"):
        check_resume(resolve(load_config(env), Device(gpu=False, bf16=False)), prepared)
    forced = resolve(load_config({**env, "TRAIN_RESUME": "force"}), Device(gpu=False, bf16=False))
    check_resume(forced, prepared)
    assert json.loads((tmp_path / "run_identity.json").read_text())["method"] == "sft"


@pytest.mark.slow
def test_a_restart_resumes_only_into_the_same_run(demo_model: str, tmp_path: Path) -> None:
    base = {
        "TRAIN_METHOD": "sft", "TRAIN_MODEL_NAME_OR_PATH": demo_model,
        "TRAIN_DATA_PATH": "dev/demo_data/sft_messages.jsonl", "TRAIN_OUTPUT_DIR": str(tmp_path / "out"),
        "TRAIN_MAX_STEPS": "6", "TRAIN_SAVE_STEPS": "3", "TRAIN_LOGGING_STEPS": "3", "TRAIN_LEARNING_RATE": "2e-3",
    }  # fmt: skip
    first = run_entrypoint(**base)
    assert first.returncode == 0, first.stderr[-2000:]

    longer = run_entrypoint(**{**base, "TRAIN_MAX_STEPS": "9"})  # run length is not identity
    assert longer.returncode == 0 and "resuming from" in longer.stderr, longer.stderr[-2000:]

    other_lr = run_entrypoint(**{**base, "TRAIN_MAX_STEPS": "12", "TRAIN_LEARNING_RATE": "1e-3"})
    assert other_lr.returncode == 2, other_lr.stderr[-2000:]
    assert "TRAIN_LEARNING_RATE: 0.002 then, 0.001 now" in other_lr.stderr and "TRAIN_RESUME=force" in other_lr.stderr

    fewer = write_jsonl(tmp_path / "fewer.jsonl", [{"text": "Count on from 1, 3 numbers. 2 3 4"}] * 50)
    other_data = run_entrypoint(**{**base, "TRAIN_MAX_STEPS": "12", "TRAIN_DATA_PATH": str(fewer)})
    assert other_data.returncode == 2 and "the train data: its validated records differ" in other_data.stderr

    forced = run_entrypoint(**{**base, "TRAIN_MAX_STEPS": "12", "TRAIN_LEARNING_RATE": "1e-3", "TRAIN_RESUME": "force"})
    assert forced.returncode == 0 and "resuming from" in forced.stderr, forced.stderr[-2000:]
    assert "TRAIN_RESUME=force: resuming although TRAIN_LEARNING_RATE" in forced.stderr

    over = run_entrypoint(**{**base, "TRAIN_RESUME": "never"})
    assert over.returncode == 0 and "resuming from" not in over.stderr, over.stderr[-2000:]
    assert list((tmp_path / "out").glob("previous-checkpoint-12.*")) and over.steps()[0] == 3


def _mixture(*fractions: float, sha: str = "a") -> dict:
    entries = [{"path": f"/d/{i}.jsonl", "split": "train", "columns": None, "format": "auto", "fraction": fraction,
                "sha256": [sha * 64]} for i, fraction in enumerate(fractions)]  # fmt: skip
    return {"entries": entries, "test_split_size": 0.1, "seed": 42}


@pytest.mark.parametrize(
    ("before", "now", "expected"),
    [
        pytest.param(_mixture(0.7, 0.3), _mixture(0.7, 0.5),
                     ["TRAIN_DATA_MIX datasets[1] (/d/1.jsonl): fraction 0.3 then, 0.5 now"], id="share"),
        pytest.param(_mixture(0.7, 0.3), _mixture(0.7, 0.3, sha="b"),
                     ["TRAIN_DATA_MIX datasets[0] (/d/0.jsonl): its files differ (sha256 bbbbbbbbbbbb)",
                      "TRAIN_DATA_MIX datasets[1] (/d/1.jsonl): its files differ (sha256 bbbbbbbbbbbb)"], id="files"),
        pytest.param(_mixture(0.7, 0.3), _mixture(0.7, 0.3, 0.1),
                     ["TRAIN_DATA_MIX datasets[2] (/d/2.jsonl): added"], id="added"),
        pytest.param(None, _mixture(1.0), ["the data: TRAIN_DATA_PATH then, TRAIN_DATA_MIX now"],
                     id="an-identity-without-the-key-had-no-mixture"),
        pytest.param(_mixture(1.0), _mixture(1.0), [], id="unchanged"),
    ],
)  # fmt: skip
def test_a_changed_mixture_names_the_entry_and_the_field(before: dict | None, now: dict, expected: list[str]) -> None:
    recorded = {"method": "sft", "model": "/m", "settings": {}, "data_sha256": {}}
    if before is not None:
        recorded["mixture"] = before
    assert changes(recorded, {**recorded, "mixture": now}) == expected
