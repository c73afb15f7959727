"""The env contract: every value parsed by its field's type, every problem named with its fix."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from jobs.config.settings import ACCELERATE_CONFIG_DIR, JobConfig, load_config, parse_value, redact
from jobs.errors import ConfigError

BASE = {"TRAIN_METHOD": "dpo", "TRAIN_DATA_PATH": "pairs.jsonl"}


@pytest.mark.parametrize(
    ("raw", "spec", "expected"),
    [
        pytest.param("TRUE", {"kind": "bool"}, True, id="bool-upper"),
        pytest.param("0", {"kind": "bool"}, False, id="bool-zero"),
        pytest.param(" 12 ", {"kind": "int"}, 12, id="int-spaces"),
        pytest.param("3e-4", {"kind": "float"}, 3e-4, id="float-exponent"),
        pytest.param("", {"kind": "int", "optional": True}, None, id="optional-empty"),
        pytest.param("q_proj, v_proj", {"kind": "list", "item": "str"}, ["q_proj", "v_proj"], id="list-commas"),
        pytest.param('["a", "b"]', {"kind": "list", "item": "str"}, ["a", "b"], id="list-json"),
        pytest.param("0.5,1", {"kind": "list", "item": "float"}, [0.5, 1.0], id="list-floats"),
        pytest.param('{"a": 1}', {"kind": "json"}, {"a": 1}, id="json-object"),
        pytest.param("/etc/ds.json", {"kind": "json"}, "/etc/ds.json", id="json-path"),
        pytest.param("auto", {"kind": "union", "kinds": ["int", "str"]}, "auto", id="union-str"),
        pytest.param("64", {"kind": "union", "kinds": ["int", "str"]}, 64, id="union-int"),
        pytest.param("cosine", {"kind": "choice", "choices": ["linear", "cosine"]}, "cosine", id="choice"),
    ],
)
def test_values_parse_by_field_type(raw: str, spec: dict[str, Any], expected: Any) -> None:
    assert parse_value("TRAIN_X", raw, spec) == expected


@pytest.mark.parametrize(
    ("raw", "spec", "message"),
    [
        pytest.param("1.5", {"kind": "int"}, "is not a valid int", id="int-fraction"),
        pytest.param("inf", {"kind": "float"}, "is not a valid float", id="float-inf"),
        pytest.param("a,b", {"kind": "list", "item": "int"}, "every item must be a int", id="list-item"),
        pytest.param('{"a": ', {"kind": "json"}, "is not valid JSON", id="json-broken"),
        pytest.param('["a",', {"kind": "list", "item": "str"}, "is not valid JSON", id="list-broken"),
        pytest.param("x", {"kind": "union", "kinds": ["bool", "int"]}, "is not a valid bool or int", id="union"),
    ],
)
def test_bad_values_name_the_variable(raw: str, spec: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        parse_value("TRAIN_X", raw, spec)
    assert "TRAIN_X" in str(error.value)


def test_settings_land_in_their_groups() -> None:
    config = load_config({**BASE, "TRAIN_BETA": "0.2", "TRAIN_LORA_R": "8", "TRAIN_EVAL_SPLIT": "0.1",
                          "TRAIN_LEARNING_RATE": "1e-5"})  # fmt: skip
    assert config.training == {"beta": 0.2, "learning_rate": 1e-5}
    assert config.model == {"lora_r": 8}
    assert config.job.eval_split == 0.1
    assert str(config.output_dir) == "output/dpo"


def test_the_same_name_parses_by_the_methods_type() -> None:
    assert load_config({**BASE, "TRAIN_LOSS_TYPE": "sigmoid,ipo"}).training["loss_type"] == ["sigmoid", "ipo"]
    sft = load_config({**BASE, "TRAIN_METHOD": "sft", "TRAIN_LOSS_TYPE": "nll"})
    assert sft.training["loss_type"] == "nll"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        pytest.param({"TRAIN_PACKING": "true"}, "applies to TRAIN_METHOD=sft only", id="sft-only-in-dpo"),
        pytest.param({"TRAIN_MAX_STEPS": "0"}, "must be -1 (use num_train_epochs) or at least 1", id="zero-steps"),
        pytest.param({"TRAIN_LEARNING_RATE": "0"}, "must be greater than 0", id="zero-lr"),
        pytest.param({"TRAIN_LORA_DROPOUT": "1.5"}, "must be at most 1", id="dropout"),
        pytest.param({"TRAIN_EVAL_DATA_PATH": "e.jsonl", "TRAIN_EVAL_SPLIT": "0.1"}, "use one source", id="two-evals"),
        pytest.param(
            {"TRAIN_LOAD_IN_4BIT": "1", "TRAIN_LOAD_IN_8BIT": "1", "TRAIN_USE_PEFT": "1"},
            "choose one",
            id="4bit-and-8bit",
        ),
        pytest.param({"TRAIN_XYZZY": "1"}, "entrypoint.py --help", id="unknown-no-suggestion"),
    ],
)
def test_contradictions_and_ranges_are_configuration_errors(settings: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        load_config({**BASE, **settings})
    assert message in error.value.report()


def test_service_links_are_recognised_by_name_or_value() -> None:
    config = load_config({**BASE, "TRAIN_DB_SERVICE_PORT": "5432", "TRAIN_DB_PORT": "tcp://10.1.2.3:5432",
                          "TRAIN_DB_PORT_5432_TCP_PROTO": "tcp"})  # fmt: skip
    assert set(config.ignored_service_links) == {
        "TRAIN_DB_SERVICE_PORT",
        "TRAIN_DB_PORT",
        "TRAIN_DB_PORT_5432_TCP_PROTO",
    }


def test_secrets_are_redacted_at_any_depth() -> None:
    config = load_config({**BASE, "TRAIN_HUB_TOKEN": "hf_secret", "TRAIN_MODEL_INIT_KWARGS": '{"api_key": "k"}'})
    effective = config.effective()
    assert "hf_secret" not in str(effective) and "'k'" not in str(effective)
    assert effective["training"]["hub_token"] == "***"
    assert redact([{"password": "p", "name": "n"}]) == [{"password": "***", "name": "n"}]
    secrets = {"hub_token": "t", "HF_TOKEN": "t", "WANDB_API_KEY": "k", "aws_secret_access_key": "k"}
    settings = {"eos_token": "</s>", "pad_token": "<pad>", "average_tokens_across_devices": True, "max_length": 9}
    assert redact({**secrets, **settings}) == {**dict.fromkeys(secrets, "***"), **settings}


def test_config_knows_its_method() -> None:
    config = load_config(BASE)
    assert isinstance(config, JobConfig) and config.method == "dpo"


@pytest.mark.parametrize("name", sorted(p.stem for p in ACCELERATE_CONFIG_DIR.glob("*.yaml")))
def test_every_shipped_accelerate_config_resolves_and_parses(name: str) -> None:
    # The multi-machine template needs what each pod's environment gives it (jobs/config/topology.py).
    pod = {"JOB_COMPLETION_INDEX": "0", "TRAIN_MAIN_PROCESS_IP": "job-0.job"} if name == "multi_node" else {}
    config = load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": name, **pod})
    assert config.accelerate_config == ACCELERATE_CONFIG_DIR / f"{name}.yaml"
    settings = yaml.safe_load(config.accelerate_config.read_text())
    assert settings["distributed_type"] in {"NO", "MULTI_GPU", "DEEPSPEED"}
    assert settings["num_processes"] >= 1


def test_an_accelerate_config_may_be_a_path_and_a_bad_name_is_reported_with_the_rest(tmp_path) -> None:
    own = tmp_path / "mine.yaml"
    own.write_text("distributed_type: NO\n")
    assert load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": str(own)}).accelerate_config == own
    with pytest.raises(ConfigError) as error:
        load_config({**BASE, "TRAIN_ACCELERATE_CONFIG": "zero9", "TRAIN_MAX_STEPS": "x"})
    assert len(error.value.problems) == 2 and "zero2" in error.value.report()


def test_each_start_makes_a_new_run_id() -> None:
    first, second = load_config(BASE), load_config(BASE)
    assert first.run_id != second.run_id and len(first.run_id) == 12
