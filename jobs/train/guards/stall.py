"""A rank that stops making progress says so: its stacks in the log, and a heartbeat the launcher watches.

A hung rank (a stopped process, a collective that never completes, a read from a dead mount) used to hold
the whole group until the process group's timeout, with no exit code saying why. Each rank now:
- re-arms `faulthandler.dump_traceback_later` at every step end, evaluation batch and save: if nothing
  follows within the stall timeout, faulthandler's own C thread (it needs no GIL) writes every thread's
  stack to stderr, the pod log, where a stuck all-reduce or read shows;
- rewrites `rank_status/heartbeat-<rank>.json` every HEARTBEAT_SECONDS from a thread: `beat` rises each
  time (the process runs), `progress` at each of those events (training moves on), with the phase and the
  timeout that applies to it. The launcher (jobs/launch/stall.py) reads these with its own clock and ends
  the group with exit 8, naming the ranks whose beat stopped: a SIGSTOPped or wedged process, while the
  ranks waiting for it in a collective still beat.

The timeout is TRAIN_STALL_TIMEOUT, or derived from the run: STALL_FACTOR x (the longest step + the longest
checkpoint save so far, jobs/train/guards/stopping.py), at least STALL_FLOOR_SECONDS; a first save, whose
time is not known yet, gets FIRST_SAVE_FLOOR_SECONDS. The time before the first step (model loading, TRL's
tokenisation, the rendezvous) is watched by the loading alert instead (k8s/monitoring/prometheusrule.yaml).
"""

from __future__ import annotations

import faulthandler
import json
import os
import socket
import sys
import threading
from typing import Any

from transformers import TrainerCallback

from jobs.layout import OutputLayout
from jobs.train.guards.stopping import StopBudget

HEARTBEAT_SECONDS = 2.0
STALL_FACTOR = 5.0
STALL_FLOOR_SECONDS = 600.0
FIRST_SAVE_FLOOR_SECONDS = 1800.0


class StallWatch(TrainerCallback):
    """This rank's heartbeat and stack-dump watchdog (see the module docstring). Runs after StopBudget, whose
    step and save times it reads."""

    def __init__(self, layout: OutputLayout, setting: float, budget: StopBudget) -> None:
        self.path = layout.heartbeat_file(os.environ.get("RANK", "0"))
        self.setting = setting
        self.budget = budget
        self.phase = "training"
        self.progress = 0
        self.step = 0
        self.beat = 0
        self._stopped = threading.Event()
        self._writing = threading.Lock()  # the heartbeat thread and the callbacks write the same file
        self._thread: threading.Thread | None = None

    def timeout(self) -> float:
        if self.setting > 0:
            return self.setting
        first_save = self.phase == "saving" and self.budget.longest_save == 0
        floor = FIRST_SAVE_FLOOR_SECONDS if first_save else STALL_FLOOR_SECONDS
        return max(floor, STALL_FACTOR * self.budget.needed)

    def _moved(self, phase: str, step: int) -> None:
        self.phase, self.step = phase, step
        self.progress += 1
        faulthandler.dump_traceback_later(self.timeout(), repeat=False, file=sys.stderr, exit=False)
        self._write()

    def _write(self) -> None:
        with self._writing:
            self.beat += 1
            body = {"rank": self.path.stem.split("-", 1)[1], "host": socket.gethostname(), "pid": os.getpid(),
                    "beat": self.beat, "progress": self.progress, "phase": self.phase, "step": self.step,
                    "timeout": self.timeout()}  # fmt: skip
            partial = self.path.with_suffix(".partial")
            partial.write_text(json.dumps(body), encoding="utf-8")
            partial.replace(self.path)

    def _beat(self) -> None:
        while not self._stopped.wait(HEARTBEAT_SECONDS):
            try:
                self._write()
            except OSError:  # a volume that hiccups: the next beat tries again; a long silence is the signal
                continue

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._moved("training", state.global_step)
        self._thread = threading.Thread(target=self._beat, name="heartbeat", daemon=True)
        self._thread.start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._moved("saving" if control.should_save else "training", state.global_step)

    def on_prediction_step(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._moved("evaluating", state.global_step)

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._moved("training", state.global_step)

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._moved("training", state.global_step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        faulthandler.cancel_dump_traceback_later()
        self._stopped.set()
        self.phase = "done"  # the final save and publishing follow, watched by nothing but their own errors
        self._write()
