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


def config_maps() -> dict[str, dict[str, str]]:
    """The data of every ConfigMap in k8s/, by name."""
    found = {}
    for path in sorted(K8S.glob("*.yaml")):
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if isinstance(document, dict) and document.get("kind") == "ConfigMap":
                found[document["metadata"]["name"]] = document.get("data", {})
    return found


def container_env(job: dict[str, Any]) -> dict[str, str]:
    """The train container's environment as the pod gets it, before Kubernetes adds its own: the shipped
    ConfigMaps it reads (envFrom), then its literal env values (Secrets left out)."""
    container = next(c for c in job["spec"]["template"]["spec"]["containers"] if c["name"] == "train")
    maps = config_maps()
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        env.update(maps[source["configMapRef"]["name"]])
    env.update({item["name"]: item["value"] for item in container.get("env", []) if "value" in item})
    return env
