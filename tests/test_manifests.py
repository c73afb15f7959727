"""Every Kubernetes manifest in k8s/ against the API schemas of the Kubernetes version the project
targets, offline and strict (unknown fields are errors): kubernetes-validate bundles the schemas."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import ROOT

KUBERNETES_VERSION = "1.33"
MANIFESTS = sorted((ROOT / "k8s").rglob("*.yaml"))


@pytest.mark.parametrize("manifest", MANIFESTS, ids=[str(m.relative_to(ROOT)) for m in MANIFESTS])
def test_the_manifest_is_valid_kubernetes(manifest: Path) -> None:
    tool = Path(sys.executable).with_name("kubernetes-validate")
    result = subprocess.run([str(tool), "--strict", "-k", KUBERNETES_VERSION, str(manifest)],
                            capture_output=True, text=True, check=False)  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0 and "ERROR" not in output, output
