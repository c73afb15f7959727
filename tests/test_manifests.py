"""Every Kubernetes manifest in k8s/ against the API schemas of the Kubernetes version the project
targets, offline and strict (unknown fields are errors): kubernetes-validate bundles the schemas of the
built-in kinds; the custom resources (PodMonitor, PrometheusRule, JobSet, Kubeflow's TrainJob and
TrainingRuntime) are checked with jsonschema against their CRDs, vendored in tests/crds/."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft4Validator

from dev.testing import ROOT

KUBERNETES_VERSION = "1.33"
MANIFESTS = sorted((ROOT / "k8s").rglob("*.yaml"))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[str(m.relative_to(ROOT)) for m in MANIFESTS])
def test_the_manifest_is_valid_kubernetes(manifest: Path) -> None:
    tool = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run([str(tool), "--strict", "-k", KUBERNETES_VERSION, str(manifest)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "ERROR" not in output, output


CRDS = ROOT / "tests" / "crds"


def _strict(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema with unknown fields refused wherever it lists the fields (what `kubectl apply` with strict
    field validation does), except where the CRD keeps unknown fields."""
    schema = dict(schema)
    if "properties" in schema and not schema.get("x-kubernetes-preserve-unknown-fields"):
        schema.setdefault("additionalProperties", False)
        schema["properties"] = {name: _strict(sub) for name, sub in schema["properties"].items()}
    for key in ("items", "additionalProperties"):
        if isinstance(schema.get(key), dict):
            schema[key] = _strict(schema[key])
    for key in ("allOf", "anyOf", "oneOf"):
        if key in schema:
            schema[key] = [_strict(sub) for sub in schema[key]]
    return schema


def _custom_resource_schemas() -> dict[tuple[str, str], dict[str, Any]]:
    """(apiVersion, kind) -> the strict openAPIV3Schema of each vendored CRD (tests/crds/README.md)."""
    schemas = {}
    for path in sorted(CRDS.glob("*.json")):
        crd = json.loads(path.read_text(encoding="utf-8"))
        schemas[(crd["apiVersion"], crd["kind"])] = _strict(crd["schema"])
    return schemas


def _custom_resources() -> list[tuple[str, dict[str, Any]]]:
    """Every document in k8s/ of an API group that is not built into Kubernetes (kustomize's files aside)."""
    found = []
    for path in MANIFESTS:
        for document in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            group = str(document.get("apiVersion", "")).rpartition("/")[0]
            if "." in group and not group.endswith(".k8s.io"):
                found.append((f"{path.relative_to(ROOT)}:{document['kind']}", document))
    return found


def _errors(document: dict[str, Any]) -> list[str]:
    schema = _custom_resource_schemas()[(document["apiVersion"], document["kind"])]
    return [
        f"{'.'.join(map(str, e.absolute_path))}: {e.message}" for e in Draft4Validator(schema).iter_errors(document)
    ]


@pytest.mark.parametrize(("name", "document"), _custom_resources(), ids=[name for name, _ in _custom_resources()])
def test_every_custom_resource_is_valid_against_its_vendored_crd(name: str, document: dict[str, Any]) -> None:
    assert (document["apiVersion"], document["kind"]) in _custom_resource_schemas(), f"{name}: no vendored CRD"
    assert _errors(document) == []


def test_the_crd_check_refuses_unknown_fields_and_wrong_types() -> None:
    """The check above can fail: a misspelt field deep in a TrainJob and a number where a string goes."""
    _, trainjob = next((n, d) for n, d in _custom_resources() if d["kind"] == "TrainJob")
    broken = copy.deepcopy(trainjob)
    broken["spec"]["trainer"]["numNode"] = 2
    broken["spec"]["initializer"]["model"]["storageUri"] = 7
    assert sorted(_errors(broken)) == [
        "spec.initializer.model.storageUri: 7 is not of type 'string'",
        "spec.trainer: Additional properties are not allowed ('numNode' was unexpected)",
    ]
