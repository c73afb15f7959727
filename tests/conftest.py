from __future__ import annotations

import subprocess
import sys

import pytest

from dev.testing import DEMO_MODEL, ROOT


@pytest.fixture(scope="session")
def demo_model() -> str:
    """The offline demo model (`make demo-model`), built once if missing."""
    if not (DEMO_MODEL / "config.json").is_file():
        subprocess.run([sys.executable, "-m", "dev.demo", "model", str(DEMO_MODEL)], cwd=ROOT, check=True)
    return str(DEMO_MODEL)


@pytest.fixture(scope="session")
def llama_76m(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A Llama-shaped model of ~76M parameters, built offline with random weights (seconds)."""
    path = tmp_path_factory.mktemp("llama") / "76m"
    subprocess.run([sys.executable, "-m", "dev.demo", "model", str(path), "--shape", "76m"], cwd=ROOT, check=True,
                   capture_output=True)  # fmt: skip
    return str(path)
