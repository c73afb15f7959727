"""The exit-code table is the one source: the README, the entrypoint's docstring and the Job agree with it."""

from __future__ import annotations

import re
from typing import Any

import pytest

import entrypoint
from dev.testing import ROOT
from jobs.errors import EXIT_CODES, ConfigError, DataError, EnvironmentProblem, JobError, OutOfMemory, exit_code_of
from tests.support.manifests import shipped_jobs


def _readme_table() -> list[tuple[int, str, str]]:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("## Exit codes", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(r"^\| (\d+) \| (.+?) \| (yes|no|-) \|$", section, flags=re.MULTILINE)
    return [(int(code), meaning, retry) for code, meaning, retry in rows]


def test_the_readme_table_is_the_exit_code_table() -> None:
    expected = [(c.code, c.meaning, "-" if c.code == 0 else ("yes" if c.retry else "no")) for c in EXIT_CODES]
    assert _readme_table() == expected


def test_the_entrypoint_docstring_names_every_code_and_no_other() -> None:
    listed = entrypoint.__doc__.split("Exit codes:", 1)[1]
    assert sorted(int(code) for code in re.findall(r"\b(\d+) [a-z]", listed)) == [c.code for c in EXIT_CODES]


@pytest.mark.parametrize(("name", "job"), shipped_jobs(), ids=[name for name, _ in shipped_jobs()])
def test_every_job_fails_at_once_on_exactly_the_codes_a_retry_cannot_fix(name: str, job: dict[str, Any]) -> None:
    rules = job["spec"]["podFailurePolicy"]["rules"]
    fail_job = [rule["onExitCodes"] for rule in rules if rule["action"] == "FailJob" and "onExitCodes" in rule]
    assert len(fail_job) == 1 and fail_job[0]["operator"] == "In"
    assert sorted(fail_job[0]["values"]) == [c.code for c in EXIT_CODES if c.code and not c.retry]
    ignored = [c for rule in rules if rule["action"] == "Ignore" for c in rule.get("onPodConditions", [])]
    assert {"type": "DisruptionTarget", "status": "True"} in ignored  # a preemption is retried, not counted


def test_every_error_class_has_a_listed_code() -> None:
    listed = {c.code for c in EXIT_CODES}
    for error in (JobError, ConfigError, DataError, EnvironmentProblem):
        assert error.exit_code in listed
    assert ConfigError("bad", ["one", "two"]).report() == "bad\n  - one\n  - two"


@pytest.mark.parametrize(
    ("error", "code", "logged"),
    [
        pytest.param(DataError("bad line", ["f.jsonl:3 /: x"]), 3, "data error: bad line\n  - f.jsonl:3 /: x", id="job-error"),
        pytest.param(OutOfMemory("CUDA out of memory\nestimate"), 5, "out of memory: CUDA out of memory", id="oom"),
        pytest.param(KeyError("surprise"), 1, "unexpected crash", id="crash"),
    ],
)  # fmt: skip
def test_one_place_turns_an_exception_into_an_exit_code(
    error: Exception, code: int, logged: str, caplog: pytest.LogCaptureFixture
) -> None:
    try:
        raise error
    except Exception as raised:
        assert exit_code_of(raised) == code
    assert logged in caplog.text
    assert ("Traceback" in caplog.text) == (code == 1)  # a crash keeps its traceback; an expected failure does not


def test_no_other_module_maps_an_exception_to_an_exit_code() -> None:
    """`except JobError` / `.exit_code` outside jobs/errors.py would be a second table of outcomes."""
    offenders = []
    for path in [*sorted((ROOT / "jobs").rglob("*.py")), ROOT / "entrypoint.py"]:
        text = path.read_text(encoding="utf-8")
        if path.name != "errors.py" and ("except JobError" in text and ".exit_code" in text):
            offenders.append(path.name)
    assert offenders == []
