from __future__ import annotations

import fcntl
import os
import subprocess
import sys

import pytest

from dev.demo import DEMO_MODEL, ROOT

# Under pytest-xdist every worker runs its tests' training processes at once: each gets its share of the
# CPUs for torch's threads, which otherwise spin against each other (two workers of two threads each on
# two cores). Set before any test imports torch; the entrypoints the tests start inherit it.
_WORKERS = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
if _WORKERS > 1:
    os.environ.setdefault("OMP_NUM_THREADS", str(max(1, len(os.sched_getaffinity(0)) // _WORKERS)))


@pytest.fixture(scope="session")
def demo_model() -> str:
    """The offline demo model (`make demo-model`), built once if missing: by one pytest-xdist worker while
    the others wait on a lock."""
    DEMO_MODEL.parent.mkdir(parents=True, exist_ok=True)
    with open(DEMO_MODEL.parent / "demo-model.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
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
