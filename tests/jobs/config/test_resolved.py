"""The run is worked out once, in the parent: process counts, the device, TRL's defaults beneath the job's
and the user's; the training processes get it as it is."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from dev.testing import run_entrypoint
from jobs.config.defaults import Device
from jobs.config.resolved import MemoryFigures, ResolvedRun, resolve
from jobs.config.settings import load_config
from jobs.errors import ConfigError
from jobs.estimate.memory import plan_for
from jobs.launch.launcher import launch_arguments
from jobs.preflight.identity import check_resume

BASE = {"TRAIN_METHOD": "dpo", "TRAIN_DATA_PATH": "dev/demo_data/dpo_pairs.jsonl"}


@pytest.mark.parametrize(
    ("settings", "processes", "machines"),
    [
        pytest.param({}, 1, 1, id="in-process"),
        pytest.param({"TRAIN_ACCELERATE_CONFIG": "multi_cpu"}, 2, 1, id="the-yaml"),
        pytest.param({"TRAIN_ACCELERATE_CONFIG": "multi_cpu", "TRAIN_NUM_PROCESSES": "4"}, 4, 1, id="train-wins"),
        pytest.param({"TRAIN_ACCELERATE_CONFIG": "multi_cpu", "PET_NPROC_PER_NODE": "3"}, 3, 1, id="pet-per-node"),
        pytest.param({"TRAIN_ACCELERATE_CONFIG": "multi_node", "PET_NPROC_PER_NODE": "4", "PET_NNODES": "2",
                      "PET_NODE_RANK": "0", "PET_MASTER_ADDR": "m"}, 8, 2, id="pet-per-node-and-nodes"),
        pytest.param({"TRAIN_ACCELERATE_CONFIG": "multi_cpu", "TRAIN_NUM_PROCESSES": "6", "PET_NPROC_PER_NODE": "3"},
                     6, 1, id="train-over-pet"),
    ],
)  # fmt: skip
def test_the_process_count_is_resolved_once(settings: dict[str, str], processes: int, machines: int) -> None:
    run = resolve(load_config({**BASE, **settings}), Device(gpu=False, bf16=False))
    assert (run.processes, run.machines) == (processes, machines)


def test_the_run_reaches_a_training_process_as_it_was_resolved() -> None:
    config = load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": "zero3", "TRAIN_BETA": "0.2", "TRAIN_USE_PEFT": "true",
                          "TRAIN_TEXT_ERRORS": "bidi,control", "TRAIN_NUM_PROCESSES": "2"})  # fmt: skip
    run = resolve(config, Device(gpu=True, bf16=True)).with_evaluation(True)
    run = dataclasses.replace(run, memory=MemoryFigures(123, ("weights 1 GB", "total 2 GB"), "set TRAIN_USE_PEFT=true"))
    again = ResolvedRun.from_json(run.to_json())
    assert again == run and again.config.run_id == config.run_id
    assert again.zero_stage == 3 and again.distributed_type == "DEEPSPEED" and again.processes == 2
    assert again.training["bf16"] is True and again.model["lora_target_modules"] == ["all-linear"]
    assert again.config.accelerate_config == Path(config.accelerate_config or "")


def test_a_setting_nobody_set_reads_trls_default() -> None:
    run = resolve(load_config({**BASE, "TRAIN_MAX_LENGTH": "512"}), Device(gpu=False, bf16=False))
    assert run.setting("max_length") == 512  # the user's
    assert run.setting("max_grad_norm") == 1.0  # the job's default
    assert run.setting("beta") == 0.1  # TRL's DPOConfig default, from the catalog
    assert run.model_setting("lora_r") == 16  # TRL's ModelConfig default
    assert run.with_evaluation(True).training["eval_strategy"] == "steps"


def test_a_methods_own_check_sees_trls_defaults() -> None:
    """KTO's KL term needs two examples a batch: TRL's default batch passes, a batch of one is refused."""
    assert resolve(load_config({**BASE, "TRAIN_METHOD": "kto"}), Device(gpu=False, bf16=False))
    with pytest.raises(ConfigError) as refused:
        resolve(load_config({**BASE, "TRAIN_METHOD": "kto", "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "1"}))
    assert "too small for KTO" in refused.value.report()


@pytest.mark.parametrize(
    "settings",
    [
        pytest.param({"TRAIN_NUM_PROCESSES": "3"}, id="TRAIN_NUM_PROCESSES"),
        pytest.param({"PET_NPROC_PER_NODE": "3"}, id="PET_NPROC_PER_NODE"),
    ],
)
def test_the_estimate_the_resume_identity_and_the_launch_count_the_same_processes(
    settings: dict[str, str], demo_model: str, tmp_path: Path
) -> None:
    """The accelerate config says 2; the environment says 3. Every consumer takes the run's count."""
    env = {**BASE, "TRAIN_ACCELERATE_CONFIG": "multi_cpu", "TRAIN_MODEL_NAME_OR_PATH": demo_model,
           "TRAIN_OUTPUT_DIR": str(tmp_path / "out"), **settings}  # fmt: skip
    run = resolve(load_config(env), Device(gpu=False, bf16=False))
    assert run.processes == 3
    assert plan_for(run).processes == 3 and run.processes_per_machine == 3  # CPU: three processes share the RAM
    assert launch_arguments(run)[:2] == ["--num_processes", "3"]
    run.layout.root.mkdir(parents=True)
    check_resume(run, {"prepared": {"train": {"sha256": "0" * 64}}})
    assert json.loads(run.layout.run_identity.read_text())["processes"] == 3
    estimate = run_entrypoint("estimate", **{k: v for k, v in env.items() if k != "TRAIN_DATA_PATH"})
    assert estimate.returncode == 0 and "x 3 processes" in estimate.stdout, estimate.stdout + estimate.stderr[-2000:]


@pytest.mark.parametrize(
    ("yaml_text", "expected"),
    [
        pytest.param("distributed_type: [MULTI_GPU\n", "does not read as YAML", id="yaml-syntax"),
        pytest.param("- a list\n", "is not a mapping", id="not-a-mapping"),
        pytest.param("distributed_type: MULTI_GPU\nnum_processes: two\n", "num_processes: 'two'", id="not-a-count"),
        pytest.param("distributed_type: DEEPSPEED\ndeepspeed_config:\n  deepspeed_config_file: /no/such.json\n",
                     "deepspeed_config_file=/no/such.json does not read", id="missing-deepspeed-file"),
    ],
)  # fmt: skip
def test_an_accelerate_config_that_does_not_read_exits_2_naming_it(
    yaml_text: str, expected: str, tmp_path: Path
) -> None:
    """A retry cannot fix a broken file: exit 2, never a crash (exit 1) that the Job retries."""
    config = tmp_path / "mine.yaml"
    config.write_text(yaml_text)
    run = run_entrypoint("estimate", TRAIN_METHOD="dpo", TRAIN_ACCELERATE_CONFIG=str(config))
    assert run.returncode == 2 and expected in run.messages() and "Traceback" not in run.stderr, run.stderr[-2000:]
