"""Checkpoints: a completeness marker, resume from the newest complete one, and an atomic final save.

A checkpoint directory counts only once the marker is written after the trainer finished saving it,
so a pod killed mid-save resumes from the previous checkpoint instead of a half-written one. The final
model is written beside `final/` and renamed into place; an existing `final/` is kept under a
timestamped name, never overwritten.
"""

from __future__ import annotations

import logging
import re
import shutil
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "CHECKPOINT_COMPLETE"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")


class CheckpointMarker(TrainerCallback):
    """Write the completeness marker into each checkpoint once the trainer has saved all of it."""

    def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        if not state.is_world_process_zero:
            return
        directory = Path(args.output_dir) / f"checkpoint-{state.global_step}"
        if directory.is_dir():
            (directory / COMPLETE_MARKER).write_text(f"{state.global_step}\n", encoding="utf-8")
            logger.info("checkpoint saved: %s", directory)


def latest_complete_checkpoint(output_dir: Path) -> Path | None:
    """The complete checkpoint with the highest step, or None; incomplete ones are reported and skipped."""
    if not output_dir.is_dir():
        return None
    found: list[tuple[int, Path]] = []
    for child in output_dir.iterdir():
        match = _CHECKPOINT_NAME.match(child.name)
        if not match or not child.is_dir():
            continue
        if (child / COMPLETE_MARKER).is_file():
            found.append((int(match.group(1)), child))
        else:
            logger.warning("skipping %s: it has no %s marker (the save was interrupted)", child, COMPLETE_MARKER)
    return max(found)[1] if found else None


def publish_final(partial: Path, final: Path) -> None:
    """Move a fully written model directory into place, keeping any previous final model."""
    if final.exists():
        kept = final.with_name(f"{final.name}.{time.strftime('%Y%m%d-%H%M%S')}")
        final.rename(kept)
        logger.warning("kept the previous final model as %s", kept)
    partial.rename(final)


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)
