"""TRAIN_PROFILE=N: N optimizer steps recorded with the torch profiler, into <output>/profile/.

The first steps pay for lazy initialisation, allocator growth and kernel selection, so recording starts
after SKIPPED_STEPS steps (one of them the profiler's own warm-up). Each rank writes:

  trace-rank<r>.json       the Chrome trace (chrome://tracing, https://ui.perfetto.dev)
  operators-rank<r>.txt    the top operators by self time (CUDA time on a GPU, CPU time otherwise)
  memory-rank<r>.pickle    on a GPU: the allocator's history, for https://pytorch.org/memory_viz
  memory-rank<r>.json      on CPU: the profiler's timeline of memory by category ([times, [sizes ...]])

A run shorter than the warm-up and N steps records what it reached, and says so.
"""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger("jobs.train")

SKIPPED_STEPS = 2  # one waited, one the profiler's warm-up
OPERATOR_ROWS = 30
MEMORY_HISTORY_ENTRIES = 100_000


class StepProfiler(TrainerCallback):
    """Profiles `steps` optimizer steps of this rank and writes what the module docstring lists."""

    def __init__(self, steps: int, directory: Path) -> None:
        self.steps, self.directory = steps, directory
        self.profiler: Any = None
        self.first_step = 0
        self.rank = 0
        self.last_step = 0
        self.written: list[Path] = []

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        import torch
        from torch.profiler import ProfilerActivity, profile, schedule

        self.rank, self.first_step = args.process_index, state.global_step + SKIPPED_STEPS + 1
        self.cuda = torch.cuda.is_available()
        if self.cuda:
            torch.cuda.memory._record_memory_history(max_entries=MEMORY_HISTORY_ENTRIES)
        activities = [ProfilerActivity.CPU, *([ProfilerActivity.CUDA] if self.cuda else [])]
        phases = schedule(wait=SKIPPED_STEPS - 1, warmup=1, active=self.steps, repeat=1)
        start = state.global_step + 1  # numbered as training counts, so the trace's ProfilerStep#N is step N
        self.profiler = profile(
            activities=activities,
            schedule=lambda number: phases(max(0, number - start)),
            on_trace_ready=self._export,
            record_shapes=True,
            profile_memory=True,
            with_stack=not self.cuda,  # the CPU memory timeline needs stacks; the GPU allocator history has its own
        )
        self.profiler.step_num = start
        self.profiler.start()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.last_step = state.global_step
        if self.profiler is not None:
            self.profiler.step()

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if self.profiler is None:
            return
        profiler, self.profiler = self.profiler, None
        profiler.stop()  # exports now if the run ended while recording
        if not self.written:
            logger.warning("TRAIN_PROFILE: the run ended at step %d, before step %d where recording starts; no "
                           "profile written", state.global_step, self.first_step)  # fmt: skip
        elif state.global_step < self.first_step + self.steps - 1:
            logger.warning("TRAIN_PROFILE: the run ended at step %d; the profile holds steps %d-%d only",
                           state.global_step, self.first_step, state.global_step)  # fmt: skip

    def _export(self, profiler: Any) -> None:
        import torch

        if self.last_step < self.first_step:  # stopped before recording began: nothing to write
            return
        self.directory.mkdir(parents=True, exist_ok=True)
        trace = self.directory / f"trace-rank{self.rank}.json"
        operators = self.directory / f"operators-rank{self.rank}.txt"
        profiler.export_chrome_trace(str(trace))
        operators.write_text(operator_table(profiler, "self_cuda_time_total" if self.cuda else "self_cpu_time_total"))
        if self.cuda:
            memory = self.directory / f"memory-rank{self.rank}.pickle"
            torch.cuda.memory._dump_snapshot(str(memory))
            torch.cuda.memory._record_memory_history(enabled=None)
        else:
            memory = self.directory / f"memory-rank{self.rank}.json"
            with warnings.catch_warnings():  # deprecated for CUDA in favour of the allocator history above
                warnings.simplefilter("ignore", FutureWarning)
                profiler.export_memory_timeline(str(memory), device="cpu")
        self.written = [trace, operators, memory]
        logger.info("TRAIN_PROFILE: %d steps from step %d recorded: %s", self.steps, self.first_step,
                    ", ".join(str(path) for path in self.written))  # fmt: skip


def operator_table(profiler: Any, sort_by: str) -> str:
    """The top operators: torch's own events only, without the Python frames that the stacks add (a thread's
    wait would otherwise top the table)."""
    from torch.autograd.profiler_util import EventList

    averages = [a for a in profiler.key_averages() if not _python_frame(a.key)]
    table = EventList(averages, use_device="cuda" if "cuda" in sort_by else None, profile_memory=True)
    return table.table(sort_by=sort_by, row_limit=OPERATOR_ROWS) + "\n"


def _python_frame(name: str) -> bool:
    return ".py(" in name or name.startswith("<built-in") or name.startswith("<frozen")
