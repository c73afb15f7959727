"""The launcher's view of its ranks' heartbeats (written by jobs/train/guards/stall.py): which ranks stalled.

Each heartbeat carries counters, never a time: the launcher notes, on its own clock, when each rank's
`beat` and `progress` last changed, so no clocks are compared across machines. A rank stalls when its
progress stands still for its timeout (plus GRACE_SECONDS, so that its own stack dump comes first). The
ranks named are those whose beat stopped too (the process no longer runs: stopped, wedged, holding the
GIL); when every stalled rank still beats, they are all waiting on something outside them (a collective,
a mount) and are all named. Each launcher watches the ranks it started, on its machine.
"""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from typing import Any

from jobs.layout import OutputLayout

GRACE_SECONDS = 10.0
SILENT_SECONDS = 10.0  # a beat missing this long: the process no longer runs (it beats every 2 s)


@dataclass
class Seen:
    beat: int
    progress: int
    beat_at: float
    progress_at: float
    report: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Stall:
    ranks: list[str]
    silent: bool  # whether the named ranks stopped beating (else: they wait on something)
    seconds: float  # how long the longest-stalled rank made no progress
    timeout: float
    step: int

    def describe(self) -> str:
        ranks = ", ".join(self.ranks)
        how = ("stopped reporting: no heartbeat and no step" if self.silent else
               "still run but made no progress (a collective or a read that never completes)")  # fmt: skip
        return (
            f"rank(s) {ranks} {how} for {self.seconds:.0f} s, past the stall timeout of {self.timeout:.0f} s "
            f"(TRAIN_STALL_TIMEOUT; last step {self.step}); each rank's stacks are in the log above"
        )


class StallWatcher:
    def __init__(self, layout: OutputLayout) -> None:
        self.layout = layout
        self.host = socket.gethostname()
        self.seen: dict[str, Seen] = {}

    def check(self, pids: set[int]) -> Stall | None:
        """Read the heartbeats of the ranks with these process ids; the stall, if any."""
        now = time.monotonic()
        for path in self.layout.heartbeat_files():
            try:
                report = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):  # being replaced: read at the next check
                continue
            if report.get("host") == self.host and report.get("pid") in pids:
                self._note(str(report["rank"]), report, now)
        stalled = {rank: seen for rank, seen in self.seen.items() if self._stalled(seen, now)}
        if not stalled:
            return None
        silent = [rank for rank, seen in stalled.items() if now - seen.beat_at > SILENT_SECONDS]
        named = silent or sorted(stalled)
        longest = max(stalled.values(), key=lambda seen: now - seen.progress_at)
        return Stall(ranks=sorted(named, key=int), silent=bool(silent), seconds=now - longest.progress_at,
                     timeout=float(longest.report["timeout"]), step=int(longest.report["step"]))  # fmt: skip

    def _note(self, rank: str, report: dict[str, Any], now: float) -> None:
        beat, progress = int(report["beat"]), int(report["progress"])
        seen = self.seen.get(rank)
        if seen is None:
            self.seen[rank] = Seen(beat, progress, now, now, report)
            return
        if beat != seen.beat:
            seen.beat, seen.beat_at = beat, now
        if progress != seen.progress:
            seen.progress, seen.progress_at = progress, now
        seen.report = report

    @staticmethod
    def _stalled(seen: Seen, now: float) -> bool:
        if seen.report.get("phase") == "done":
            return False
        return now - seen.progress_at > float(seen.report["timeout"]) + GRACE_SECONDS
