"""Checkpoints: a completeness marker, resume from the newest complete one, and a full volume said as such.

A checkpoint directory counts only once the marker is written after the trainer finished saving it,
so a pod killed mid-save resumes from the previous checkpoint instead of a half-written one. The marker
lists every file's size and checksum, hashed by all ranks (jobs/integrity.py), so that a checkpoint
damaged later is found before a resume. A save that
fills the output volume leaves its checkpoint unmarked, and the run exits 4 naming the volume (a retry
cannot free it), instead of a crash that Kubernetes retries.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from jobs.config.resolved import ResolvedRun
from jobs.errors import EnvironmentProblem
from jobs.estimate.formula import human_size
from jobs.integrity import checksums, list_checkpoint, write_marker
from jobs.layout import COMPLETE_MARKER, OutputLayout
from jobs.preflight.checks import checkpoint_estimate
from jobs.train.guards.divergence import weights_are_finite

# How a full volume reaches Python: an OSError from Python's own writes; safetensors' Rust writer as
# "No space left on device (os error 28)"; torch's zip writer as "file write failed", with no errno.
NO_SPACE_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
NO_SPACE_TEXTS = ("No space left on device", "Disk quota exceeded", "os error 28", "os error 122")
UNSPECIFIED_WRITE_FAILURE = "file write failed"

logger = logging.getLogger(__name__)


class CheckpointMarker(TrainerCallback):
    """Write the completeness marker into each checkpoint once every rank has saved all of it, and keep the
    newest complete checkpoint out of the trainer's rotation (save_total_limit), which would otherwise
    delete it to make room for a newer one that may never become complete.

    The rotation spares `state.best_model_checkpoint`; the job points it at the newest complete checkpoint
    unless the user ranks checkpoints by a metric (TRAIN_METRIC_FOR_BEST_MODEL), which then decides.
    """

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        newest = latest_complete_checkpoint(OutputLayout(Path(args.output_dir)))
        if newest is not None and args.metric_for_best_model is None:
            state.best_model_checkpoint = str(newest)

    def __init__(self) -> None:
        self._mark = time.monotonic()

    def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._mark = time.monotonic()  # a save starts after the step: its time goes into the marker

    def on_evaluate(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self._mark = time.monotonic()

    def on_save(self, args: Any, state: Any, control: Any, model: Any = None, **kwargs: Any) -> None:
        from accelerate import PartialState
        from accelerate.utils import broadcast_object_list, gather_object

        ranks = PartialState()
        ranks.wait_for_everyone()  # every rank has written its part (its RNG state, its shards)
        saved = time.monotonic() - self._mark
        directory = OutputLayout(Path(args.output_dir)).checkpoint(state.global_step)
        # Rank 0's listing, so that every rank hashes files it is sure exist; then each rank its share.
        listing = [list_checkpoint(directory) if state.is_world_process_zero else None]
        broadcast_object_list(listing)
        started = time.monotonic()
        assert listing[0] is not None
        share = listing[0].shares(ranks.num_processes)[ranks.process_index]
        files: dict[str, dict[str, Any]] = {}
        for part in gather_object([checksums(directory, share)]):
            files.update(part)
        if not state.is_world_process_zero:
            return
        if not directory.is_dir():
            return
        if model is not None and not weights_are_finite(model):
            logger.error("%s holds non-finite weights: not marked complete, never resumed from", directory)
            return
        hashed = time.monotonic() - started
        write_marker(directory, state.global_step, files, {"save": round(saved, 3), "checksums": round(hashed, 3)})
        logger.info("checkpoint saved: %s (%d files, %s; written in %.1f s, checksums in %.1f s)", directory,
                    len(files), human_size(sum(f["size"] for f in files.values())), saved, hashed)  # fmt: skip
        if args.metric_for_best_model is None:
            state.best_model_checkpoint = str(directory)


def latest_complete_checkpoint(layout: OutputLayout) -> Path | None:
    """The complete checkpoint with the highest step, or None; incomplete ones are reported and skipped."""
    complete = None
    for _step, directory in layout.checkpoints():
        if layout.is_complete(directory):
            complete = directory
        else:
            why = "its save was interrupted, or its weights were not finite"
            logger.warning("skipping %s: it has no %s marker (%s)", directory, COMPLETE_MARKER, why)
    return complete


def _chain(error: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    link: BaseException | None = error
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        yield link
        link = link.__cause__ or link.__context__


def is_volume_full(error: BaseException, output_dir: Path) -> bool:
    """Whether `error` is a write that found the output volume full (or over its quota)."""
    for link in _chain(error):
        if isinstance(link, OSError) and link.errno in NO_SPACE_ERRNOS:
            return True
        text = str(link)
        if any(marker in text for marker in NO_SPACE_TEXTS):
            return True
        if UNSPECIFIED_WRITE_FAILURE in text:  # torch says no more: judge by the room left
            return shutil.disk_usage(output_dir).free < (1 << 20)
    return False


def volume_full(run: ResolvedRun) -> EnvironmentProblem:
    """Exit 4 naming the volume, its free bytes and what a checkpoint takes; where a restart resumes."""
    output_dir, layout = run.config.output_dir, run.layout
    free = shutil.disk_usage(output_dir).free
    newest = latest_complete_checkpoint(layout)
    if newest is not None:
        needed, how = _bytes_under(newest), f"as {newest.name} does"
    else:
        needed, how = checkpoint_estimate(run), "estimated from the model's safetensors headers"
    takes = f"a checkpoint of this run takes {human_size(needed)} ({how})" if needed else "it cannot take a checkpoint"
    unfinished = [d.name for _, d in layout.checkpoints() if not layout.is_complete(d)]
    left = f"; {unfinished[-1]} was left incomplete and is never resumed from" if unfinished else ""
    return EnvironmentProblem(
        f"the output volume {_mount_point(output_dir)} (TRAIN_OUTPUT_DIR={output_dir}) is full: "
        f"{human_size(free)} free, and {takes}{left}. Free space on the volume (other runs' files, old "
        "checkpoints), lower TRAIN_SAVE_TOTAL_LIMIT, or mount a larger volume; a restart resumes from "
        f"{newest or 'the start'}"
    )


def _bytes_under(directory: Path) -> int:
    return sum(path.stat().st_size for path in directory.rglob("*") if path.is_file())


def _mount_point(path: Path) -> Path:
    path = path.resolve()
    while not os.path.ismount(path) and path.parent != path:
        path = path.parent
    return path
