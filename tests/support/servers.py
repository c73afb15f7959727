"""Servers the tests start themselves (Prometheus, the Pushgateway, the job): ports, polling, and
ending each by its own process handle, never by name, so parallel test runs never touch each other."""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any


def get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return response.read().decode()


def wait_for(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            result = check()
        except OSError:
            result = None
        if result:
            return result
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


def stop(process: subprocess.Popen[Any], timeout: float = 30) -> None:
    """End a process a test started, by its handle: SIGTERM, then SIGKILL if it outlives `timeout`."""
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=timeout)


@contextmanager
def started(args: list[str], **popen: Any) -> Iterator[subprocess.Popen[Any]]:
    """`subprocess.Popen(args, **popen)`, stopped by its handle when the block ends, however it ends."""
    process = subprocess.Popen(args, **popen)
    try:
        yield process
    finally:
        stop(process)
