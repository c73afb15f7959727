"""One writer per output directory: a lease file, created with O_EXCL and renewed by its holder.

`<output>/writer.lease` names its holder (run id, host, pid, start by the holder's own clock, a random
token) and holds a counter that the holder raises every RENEW_SECONDS from a thread of the entrypoint
process, for the whole run. Another job that finds the file watches the counter: if it moves, the holder
is alive and the job exits 7 naming it, before writing anything (Kubernetes retries it: the holder may
be a pod that is still saving, and the retry's backoff gives it time). If the counter stays still for
TRAIN_LOCK_STALE_SECONDS the holder is gone (killed, its node lost), and the job takes the lease over;
a holder on this same host whose process is gone is taken over at once. Only the counter is compared,
never the clocks of two machines. A holder that finds its lease taken over
(it was frozen for longer than that) stops at once, exit 7, without another write.

flock is not used: on some NFS mounts and FUSE drivers it silently locks only on the node that took it.
A multi-machine run takes the lease once, on machine 0's entrypoint.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

from jobs.errors import WriterBusy

logger = logging.getLogger(__name__)

LEASE_FILE = "writer.lease"
RENEW_SECONDS = 2.0
POLL_SECONDS = 0.5


def _read(path: Path) -> dict[str, Any] | None:
    """The lease as written, or None while it is absent or half-written (a write is one small rename)."""
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _write(path: Path, lease: dict[str, Any]) -> None:
    partial = path.with_name(f".{path.name}.{lease['token']}")
    partial.write_text(json.dumps(lease), encoding="utf-8")
    partial.replace(path)


def describe(lease: dict[str, Any]) -> str:
    return (f"run {lease.get('run_id')} (host {lease.get('host')}, pid {lease.get('pid')}, started "
            f"{lease.get('started')})")  # fmt: skip


class Lease:
    """The lease this process holds: renewed by a thread until `release`; `on_lost` runs if another job
    takes it over."""

    def __init__(self, path: Path, holder: dict[str, Any], on_lost: Callable[[str], None]) -> None:
        self.path, self.holder, self.on_lost = path, holder, on_lost
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name="writer-lease", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(RENEW_SECONDS):
            seen = _read(self.path)
            if seen is not None and seen.get("token") != self.holder["token"]:
                self.on_lost(f"the lease {self.path} was taken over by {describe(seen)}")
                return
            self.holder["counter"] += 1
            _write(self.path, self.holder)

    def release(self) -> None:
        self._stop.set()
        self._thread.join()
        seen = _read(self.path)
        if seen is not None and seen.get("token") == self.holder["token"]:
            self.path.unlink(missing_ok=True)


def acquire(output_dir: Path, run_id: str, stale_seconds: float, on_lost: Callable[[str], None]) -> Lease:
    """The output directory's lease for this process; WriterBusy (exit 7) while a live job holds it."""
    path = output_dir / LEASE_FILE
    holder = {"run_id": run_id, "host": socket.gethostname(), "pid": os.getpid(),
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "token": uuid.uuid4().hex, "counter": 0}  # fmt: skip
    while True:
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            if _found_stale(path, stale_seconds):
                _take_over(path, holder)
                return Lease(path, holder, on_lost)
            continue  # it vanished: try again
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(json.dumps(holder))
        return Lease(path, holder, on_lost)


def _found_stale(path: Path, stale_seconds: float) -> bool:
    """Whether the lease at `path` is a gone holder's; False when it vanished; WriterBusy while it is renewed."""
    seen = _read(path)
    while seen is None:  # being written by its first holder, or gone
        if not path.exists():
            return False
        time.sleep(POLL_SECONDS)
        seen = _read(path)
    if not (_holder_gone_from_this_host(seen) or _is_stale(path, seen, stale_seconds)):
        return False
    logger.warning("taking over the lease of %s: its holder is gone", describe(seen))
    return True


def _holder_gone_from_this_host(seen: dict[str, Any]) -> bool:
    """A holder on this very host (a restart in the same pod, a local run) whose process is gone: no need to
    watch its counter. Any other holder, or a live pid (perhaps reused), is judged by the counter alone."""
    if seen.get("host") != socket.gethostname() or not isinstance(seen.get("pid"), int):
        return False
    try:
        os.kill(seen["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, as another user
        return False
    return False


def _take_over(path: Path, holder: dict[str, Any]) -> None:
    _write(path, holder)
    time.sleep(2 * POLL_SECONDS)  # two jobs that found it stale at once: the last write wins
    winner = _read(path)
    if winner is not None and winner.get("token") != holder["token"]:
        raise WriterBusy(f"another job took over the lease of {path.parent} at the same moment: {describe(winner)}; "
                         "a retry (exit 7 is retried) waits for it")  # fmt: skip


def _is_stale(path: Path, seen: dict[str, Any], stale_seconds: float) -> bool:
    """Whether the lease stays as `seen` for `stale_seconds`; WriterBusy as soon as it moves."""
    deadline = time.monotonic() + stale_seconds
    while time.monotonic() < deadline:
        time.sleep(POLL_SECONDS)
        now = _read(path)
        if now is None:
            return False  # released: the caller tries O_EXCL again
        if now.get("counter") != seen.get("counter") or now.get("token") != seen.get("token"):
            raise WriterBusy(
                f"another job writes to {path.parent}: {describe(now)} holds {path} and renews it; this job "
                "stops before writing anything. Give each job its own TRAIN_OUTPUT_DIR, or wait for that one: "
                "a retry (exit 7 is retried) starts once it is gone"
            )
    return True
