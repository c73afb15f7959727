"""The shipped alert rules, and the promtool that checks them."""

from __future__ import annotations

import shutil
from typing import Any

import yaml

from dev.testing import ROOT

RULES = ROOT / "k8s" / "monitoring" / "prometheusrule.yaml"


def promtool() -> str:
    found = shutil.which("promtool")
    assert found, "promtool is missing: install Debian's prometheus package (`make test` does, as root)"
    return found


def alerts() -> list[dict[str, Any]]:
    spec = yaml.safe_load(RULES.read_text())["spec"]
    return [rule for group in spec["groups"] for rule in group["rules"] if "alert" in rule]
