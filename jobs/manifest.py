"""The run manifest: what produced a model (package versions, data hashes, git revision, machine)."""

from __future__ import annotations

import hashlib
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "deepspeed", "bitsandbytes")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision() -> str | None:
    """The source revision: GIT_REVISION (set when the image is built) or the checkout's HEAD."""
    if os.environ.get("GIT_REVISION"):
        return os.environ["GIT_REVISION"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def build_manifest(run_id: str, data_files: dict[str, str | None], extra: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "host": platform.node(),
        "packages": package_versions(),
        "data": {role: {"path": p, "sha256": sha256_of(Path(p))} for role, p in data_files.items() if p},
        **extra,
    }
