# make sft | dpo      train on the built-in demo (tiny offline model + bundled data), or on yours via TRAIN_*
# make validate       config and data checks only (TRAIN_METHOD, TRAIN_DATA_PATH ...); writes validation_report.json
# make test | lint    the test suite (with coverage gate) and the static checks
# make bench          benchmarks as ratios against a baseline measured in the same run
# make install        the .venv (done automatically by every other target)
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEMO_MODEL := .cache/demo-model
LINT_PATHS := jobs entrypoint.py

# With no model given, sft/dpo/validate use the built-in demo. Each TRAIN_* variable still overrides.
ifeq ($(origin TRAIN_MODEL_NAME_OR_PATH),undefined)
DEMO_PREREQ := $(DEMO_MODEL)/config.json
DEMO_ENV = TRAIN_MODEL_NAME_OR_PATH=$(DEMO_MODEL) \
	TRAIN_DATA_PATH=$${TRAIN_DATA_PATH:-$(DEMO_DATA_$(1))} \
	TRAIN_LEARNING_RATE=$${TRAIN_LEARNING_RATE:-$(DEMO_LR_$(1))} \
	TRAIN_EVAL_SPLIT=$${TRAIN_EVAL_SPLIT:-0.1} \
	TRAIN_LOGGING_STEPS=$${TRAIN_LOGGING_STEPS:-10}
endif
# Local runs need not wait for a Prometheus scrape after the end (the container default is 60 s).
LOCAL_ENV = TRAIN_METRICS_LINGER_SECONDS=$${TRAIN_METRICS_LINGER_SECONDS:-0}
DEMO_DATA_sft := jobs/demo_data/sft_messages.jsonl
DEMO_DATA_dpo := jobs/demo_data/dpo_pairs.jsonl
DEMO_LR_sft := 2e-3
DEMO_LR_dpo := 5e-4

.PHONY: help install sft dpo validate test lint bench catalog demo-model clean

help:
	@sed -n 's/^# //p' Makefile | head -5

$(STAMP): requirements.txt requirements-dev.txt scripts/install.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	scripts/install.sh $(PY) requirements.txt requirements-dev.txt
	touch $@

install: $(STAMP)

$(DEMO_MODEL)/config.json: jobs/demo.py | $(STAMP)
	$(PY) -m jobs.demo model $(DEMO_MODEL)

demo-model: $(DEMO_MODEL)/config.json

sft dpo: $(STAMP) $(DEMO_PREREQ)
	TRAIN_METHOD=$@ $(LOCAL_ENV) $(call DEMO_ENV,$@) $(PY) entrypoint.py

validate: $(STAMP)
	export TRAIN_METHOD=$${TRAIN_METHOD:-dpo}; \
	export TRAIN_DATA_PATH=$${TRAIN_DATA_PATH:-jobs/demo_data/$$([ $$TRAIN_METHOD = sft ] && echo sft_messages || echo dpo_pairs).jsonl}; \
	$(PY) entrypoint.py validate

# pytest's exit 5 ("no tests collected") is not a failure of the suite.
test: $(STAMP) $(DEMO_MODEL)/config.json
	$(PY) -m pytest $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] || exit $$rc; }

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS) tests
	$(VENV)/bin/ruff format --check $(LINT_PATHS) tests
	$(VENV)/bin/pyright $(LINT_PATHS)

# Speed and memory against baselines measured in the same run (results in output/bench/).
bench: $(STAMP)
	$(PY) -m tests.benchmarks.bench_validation
	$(PY) -m tests.benchmarks.bench_exporter

# Regenerate jobs/settings_catalog.json after changing the pinned TRL version.
catalog: $(STAMP)
	$(PY) -m jobs.catalog

clean:
	rm -rf output .cache .pytest_cache .coverage .coverage.*
