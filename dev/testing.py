"""Running the real entrypoint as a user does, for end-to-end tests and benchmarks, and reading what a user
would read: exit code, log lines, metrics."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dev.demo import ROOT

# Real third-party data files, unmodified (provenance and licences in its README.md).
REALDATA = ROOT / "tests" / "data" / "realdata"


@dataclass
class Run:
    returncode: int
    stdout: str
    stderr: str

    def logs(self) -> list[dict[str, Any]]:
        """The JSON log lines (runs use TRAIN_LOG_FORMAT=json unless told otherwise)."""
        lines = []
        for line in self.stderr.splitlines():
            if line.startswith("{"):
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
        return lines

    def messages(self) -> str:
        """The log lines' messages, as a person reads them (quotes unescaped)."""
        return "\n".join(str(entry.get("message", "")) for entry in self.logs())

    def steps(self) -> list[int]:
        """The steps of the training log lines (those with a loss), in log order."""
        return [
            entry["step"] for entry in self.logs() if "loss" in entry and "step" in entry and "eval_loss" not in entry
        ]

    def series(self, key: str) -> list[float]:
        """The values of one training metric in log order, e.g. "loss" or "rewards_margins"."""
        return [entry[key] for entry in self.logs() if key in entry and "step" in entry and "eval_loss" not in entry]


def free_port() -> int:
    """A TCP port on loopback that nothing listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def clean_env(**settings: str) -> dict[str, str]:
    """The test process's environment without any TRAIN_* variable, plus `settings`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("TRAIN_")}
    # No exporter unless a test asks for one, and a rendezvous port of its own for a run of several processes
    # (accelerate's default, 29500, is one port for every run at once): parallel tests must not race for one.
    env.update({"HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false", "TRAIN_LOG_FORMAT": "json",
                "TRAIN_METRICS_PORT": "0", "TRAIN_MAIN_PROCESS_PORT": str(free_port())})  # fmt: skip
    # DeepSpeed's JIT-compiled CPU ops (CPU Adam, shm comm) are built once per clone, not once per test.
    env.setdefault("TORCH_EXTENSIONS_DIR", str(ROOT / ".cache" / "torch_extensions"))
    env.update(settings)
    return env


def run_entrypoint(*args: str, timeout: float = 600, **settings: str) -> Run:
    result = subprocess.run(
        [sys.executable, str(ROOT / "entrypoint.py"), *args],
        env=clean_env(**settings),
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    return Run(result.returncode, result.stdout, result.stderr)


def write_jsonl(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def falls(values: list[float]) -> bool:
    """The mean of the last two values is clearly below the mean of the first two."""
    assert len(values) >= 4, f"too few logged values to judge a trend: {values}"
    first, last = sum(values[:2]) / 2, sum(values[-2:]) / 2
    return last < first * 0.9


def rises(values: list[float]) -> bool:
    assert len(values) >= 4, f"too few logged values to judge a trend: {values}"
    first, last = sum(values[:2]) / 2, sum(values[-2:]) / 2
    return last > first and last > 0
