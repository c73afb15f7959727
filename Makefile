# make sft | dpo | …  train on the built-in demo (tiny offline model + bundled data), or on yours via TRAIN_*
# make validate       config and data checks only (TRAIN_METHOD, TRAIN_DATA_PATH ...); writes validation_report.json
# make estimate       the peak memory of a training process against this machine's (TRAIN_METHOD, model ...)
# make test           the fast tier: unit tests and a handful of end-to-end runs (a few minutes)
# make test-all       every test, with the coverage gate (what CI runs); make lint: the static checks
# make bench          benchmarks as ratios against a baseline measured in the same run
# make profile        the demo under the torch profiler (TRAIN_PROFILE=5 steps): trace, operators, memory
# make image          the container image (docker, else buildah); make image-test builds it offline and runs it
# make install        the .venv (done automatically by every other target)
SHELL := /bin/bash
.DEFAULT_GOAL := help
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
ENV := $(STAMP)
DEMO_MODEL := .cache/demo-model
LINT_PATHS := jobs entrypoint.py dev

# The training targets, one per registered method (jobs/methods/): `make sft`, `make dpo`, ...
METHODS := $(shell $(PYTHON) -m jobs.methods)
# With no model given, the method targets train the built-in demo model (rebuilt when its code changes).
ifeq ($(origin TRAIN_MODEL_NAME_OR_PATH),undefined)
DEMO_PREREQ := $(DEMO_MODEL)/config.json
endif

.PHONY: help install $(METHODS) validate estimate test test-all test-tools lint bench profile catalog demo-model image image-test clean

help:
	@sed -n 's/^# //p' Makefile | head -9

$(STAMP): requirements.txt requirements-dev.txt scripts/install.sh
	test -x $(PY) || { scripts/test-tools.sh venv $(PYTHON) && $(PYTHON) -m venv $(VENV); }
	scripts/install.sh $(PY) requirements.txt requirements-dev.txt
	touch $@

install: $(ENV)

$(DEMO_MODEL)/config.json: dev/demo.py dev/counting.py | $(STAMP)
	$(PY) -m dev.demo model $(DEMO_MODEL)

demo-model: $(DEMO_MODEL)/config.json

# The demo's variables (model, data, learning rate) apply under whatever TRAIN_* the user set.
$(METHODS): $(ENV) $(DEMO_PREREQ)
	$(PY) -m dev.demo run $@

validate: $(ENV)
	$(PY) -m dev.demo run validate

estimate: $(ENV) $(DEMO_PREREQ)
	$(PY) -m dev.demo run estimate

# TRAIN_PROFILE steps of a method's demo (TRAIN_METHOD, default sft) recorded by the torch profiler into
# <TRAIN_OUTPUT_DIR>/profile/ (jobs/train/guards/profiling.py); by default a fresh output/profile-<method>/ each time.
profile: $(ENV) $(DEMO_PREREQ)
	method=$${TRAIN_METHOD:-sft}; out=$${TRAIN_OUTPUT_DIR:-output/profile-$$method}; \
	[ -n "$${TRAIN_OUTPUT_DIR:-}" ] || rm -rf "$$out"; \
	TRAIN_OUTPUT_DIR=$$out TRAIN_PROFILE=$${TRAIN_PROFILE:-5} TRAIN_MAX_STEPS=$${TRAIN_MAX_STEPS:-10} \
		$(PY) -m dev.demo run $$method

# Debian packages the tests use (a real Prometheus, promtool, a Pushgateway): installed when missing as
# root, otherwise the command to run is printed.
test-tools:
	scripts/test-tools.sh

# Two tiers (pytest-xdist, one worker per CPU): `make test` leaves out the tests marked slow; `make test-all`
# runs them too, with the coverage gate. pytest's exit 5 ("no tests collected") is not a failure of the suite.
test: test-tools $(ENV) $(DEMO_MODEL)/config.json
	$(PY) -m pytest -m "not slow" -n auto $(PYTEST_ARGS) || { rc=$$?; [ $$rc -eq 5 ] || exit $$rc; }

test-all: test-tools $(ENV) $(DEMO_MODEL)/config.json
	$(PY) -m pytest -n auto --cov --cov-report=term-missing:skip-covered --cov-fail-under=85 $(PYTEST_ARGS) \
		|| { rc=$$?; [ $$rc -eq 5 ] || exit $$rc; }

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINT_PATHS) tests bench
	$(VENV)/bin/ruff format --check $(LINT_PATHS) tests bench
	$(VENV)/bin/pyright $(LINT_PATHS)
	$(VENV)/bin/deptry .
	$(VENV)/bin/hadolint --failure-threshold warning Dockerfile
	$(VENV)/bin/shellcheck -x scripts/*.sh

# Speed and memory against baselines measured in the same run: bench/results/<date>.json, BENCHMARKS.md.
bench: $(ENV) $(DEMO_MODEL)/config.json
	$(PY) -m bench.run

# The image: docker build when a daemon answers, else buildah (IMAGE=trainjob:latest; scripts/image.sh).
image:
	scripts/image.sh

# Offline build from a local Debian base and wheelhouse, then the SFT demo in it (no network, uid 1000,
# read-only root) and a SIGTERM mid-training; results in output/image-test/ (scripts/image-test.sh, root).
image-test: $(STAMP)
	scripts/image-test.sh

# Regenerate jobs/config/settings_catalog.json after changing the pinned TRL version.
catalog: $(STAMP)
	$(PY) -m jobs.config.catalog

clean:
	rm -rf output .cache .pytest_cache .coverage .coverage.*
