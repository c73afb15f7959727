"""The method registry is the one list of methods: config, catalog, --help, data kinds, metrics, make targets."""

from __future__ import annotations

import subprocess
import sys

import pytest

from dev.testing import ROOT, run_entrypoint
from jobs.config.catalog import load_catalog
from jobs.config.reference import sections
from jobs.config.settings import load_config
from jobs.data.formats import FORMATS
from jobs.methods import METHODS, methods_for_kind

NAMES = sorted(METHODS)


@pytest.mark.parametrize("name", NAMES)
def test_each_method_names_real_trl_classes_and_known_dataset_kinds(name: str) -> None:
    method = METHODS[name]
    assert method.config_class().__name__ == method.trl_config
    assert method.trainer_class().__name__ == method.trl_trainer
    known_kinds = {fmt.kind for fmt in FORMATS.values()}
    assert method.dataset_kinds and set(method.dataset_kinds) <= known_kinds
    log_keys = [metric.log_key for metric in method.metrics]
    assert len(log_keys) == len(set(log_keys))


@pytest.mark.parametrize("name", NAMES)
def test_each_method_is_a_setting_a_catalog_group_and_a_help_section(name: str) -> None:
    config = load_config({"TRAIN_METHOD": name, "TRAIN_DATA_PATH": "d.jsonl"})
    assert config.method == name and str(config.output_dir) == f"output/{name}"
    assert name in load_catalog()
    assert name in dict(sections())


def test_make_lists_exactly_the_registered_methods() -> None:
    # The Makefile's targets come from this command, run with the system's python3 (no venv yet).
    listed = subprocess.run([sys.executable, "-m", "jobs.methods"], cwd=ROOT, capture_output=True, text=True,
                            check=True).stdout.split()  # fmt: skip
    assert listed == list(METHODS)
    makefile = (ROOT / "Makefile").read_text()
    assert "METHODS := $(shell $(PYTHON) -m jobs.methods)" in makefile and "$(METHODS):" in makefile


def test_every_dataset_kind_is_trained_by_some_method() -> None:
    for kind in {fmt.kind for fmt in FORMATS.values()}:
        assert methods_for_kind(kind), f"no method trains on {kind} data"


def test_an_unknown_method_lists_the_registered_ones(tmp_path) -> None:
    run = run_entrypoint("validate", TRAIN_METHOD="ppo", TRAIN_DATA_PATH="x.jsonl", TRAIN_OUTPUT_DIR=str(tmp_path))
    assert run.returncode == 2 and f"valid methods: {', '.join(METHODS)}" in run.stderr


def test_methods_train_on_the_validated_records_as_they_are_unless_they_say_otherwise() -> None:
    records = object()
    assert METHODS["sft"].prepare_dataset(records, 42) is records
    assert METHODS["dpo"].prepare_dataset(records, 42) is records
