"""Real small volumes for tests of a full disk: a tmpfs of a given size, mounted for one test."""

from __future__ import annotations

import contextlib
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest


@contextlib.contextmanager
def tmpfs(directory: Path, size: str) -> Iterator[Path]:
    """`directory` as a tmpfs of `size` (mount's syntax: 4m, 24m) for the block; the test is skipped where
    mounting is not allowed (it needs root, in a machine that permits it)."""
    directory.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(directory)],
                             capture_output=True, text=True, check=False)  # fmt: skip
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({mounted.stderr.strip()}): needs root in a machine that allows it")
    try:
        yield directory
    finally:
        subprocess.run(["umount", str(directory)], check=False)
