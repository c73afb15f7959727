"""The shipped alert rules: valid for promtool, each documented, each unit-tested firing and not firing."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.rules import RULES, alerts, promtool

UNIT_TESTS = Path(__file__).with_name("alerts.test.yaml")


def test_promtool_accepts_the_rules_with_their_annotations(tmp_path: Path) -> None:
    spec = tmp_path / "rules.yaml"  # promtool reads a PrometheusRule's spec, not the custom resource
    spec.write_text(yaml.safe_dump(yaml.safe_load(RULES.read_text())["spec"]))
    result = subprocess.run([promtool(), "check", "rules", str(spec)], capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("rule", alerts(), ids=lambda rule: rule["alert"])
def test_every_alert_has_severity_summary_description_and_runbook(rule: dict[str, Any]) -> None:
    assert rule["labels"]["severity"] in {"warning", "critical"}
    assert {"summary", "description", "runbook"} <= set(rule["annotations"])


def test_every_alert_fires_and_stays_quiet_in_promtool_unit_tests(tmp_path: Path) -> None:
    spec = yaml.safe_load(RULES.read_text())["spec"]
    for group in spec["groups"]:
        for rule in group["rules"]:
            rule.pop("annotations", None)  # templated text is checked above; the unit tests check firing
    (tmp_path / "rules.yaml").write_text(yaml.safe_dump(spec))
    shutil.copy(UNIT_TESTS, tmp_path / UNIT_TESTS.name)
    tested = {case["alertname"] for test in yaml.safe_load(UNIT_TESTS.read_text())["tests"]
              for case in test["alert_rule_test"]}  # fmt: skip
    assert tested == {rule["alert"] for rule in alerts()}
    result = subprocess.run(
        [promtool(), "test", "rules", UNIT_TESTS.name], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert result.returncode == 0 and "SUCCESS" in result.stdout, result.stdout + result.stderr
