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
