from __future__ import annotations

import subprocess
import sys

import pytest

from tests.helpers import DEMO_MODEL, ROOT


@pytest.fixture(scope="session")
def demo_model() -> str:
    """The offline demo model (`make demo-model`), built once if missing."""
    if not (DEMO_MODEL / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "jobs.demo", "model", str(DEMO_MODEL)], cwd=ROOT, check=True)
    return str(DEMO_MODEL)


@pytest.fixture(scope="session")
def llama_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    """Llama-shaped models of ~76M and ~150M parameters, built offline with random weights (seconds each)."""
    root = tmp_path_factory.mktemp("llama")
    for shape in ("76m", "150m"):
        subprocess.run([sys.executable, "-m", "jobs.demo", "model", str(root / shape), "--shape", shape], cwd=ROOT,
                       check=True, capture_output=True)  # fmt: skip
    return {shape: str(root / shape) for shape in ("76m", "150m")}
