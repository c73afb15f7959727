"""The Kubernetes Jobs the project ships (k8s/*.yaml), for tests that hold them to the code's contracts."""

from __future__ import annotations

from typing import Any

import yaml

from tests.helpers import ROOT

K8S = ROOT / "k8s"


def shipped_jobs() -> list[tuple[str, dict[str, Any]]]:
    """(file name, Job) for every Job in k8s/ (multi-document files included)."""
    found = []
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "Job":
                found.append((path.name, document))
    return found


def container_env(job: dict[str, Any]) -> dict[str, str]:
    """The train container's literal env values (what the pod gets, before Kubernetes adds its own)."""
    container = next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "train")
    return {item["name"]: item["value"] for item in container.get("env", []) if "value" in item}
