"""The output directory's layout: the one place that names the files a run writes and reads back.

<output_dir>/
  data/train.jsonl, data/eval.jsonl   the validated records training reads (data/cache: datasets' cache)
  validation_report.json              what validation found
  train.log                           the job's log lines, appended across restarts
  tensorboard/                        TensorBoard event files
  samples.jsonl                       greedy generations at each evaluation and at the end, appended across
                                      restarts (jobs/train/guards/samples.py)
  profile/                            TRAIN_PROFILE's trace, top operators and memory timeline, per rank
  checkpoint-<step>/                  checkpoints (transformers' naming), complete once CHECKPOINT_COMPLETE exists
                                      (it lists each file's size and checksum: jobs/integrity.py)
  incomplete-checkpoint-<step>/       one that never became complete, set aside at the next start
  damaged-checkpoint-<step>/          one whose files no longer match its marker, set aside at the next start
  run_identity.json                   what this run trains with, checked when it resumes (jobs/preflight/identity.py)
  rank_status/rank-<n>.json           each rank's exit code, for the launcher
  rank_status/heartbeat-<n>.json      each rank's liveness and progress while it trains (jobs/train/guards/stall.py)
  final.partial/ -> final/            the published model; a previous final/ is kept as final.<time>
  final.partial.logits.safetensors    a sample prompt's logits from the trained model, for the reload check
                                      before final.partial/ is published (jobs/release/reload.py)
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

COMPLETE_MARKER = "CHECKPOINT_COMPLETE"
_CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")  # transformers' PREFIX_CHECKPOINT_DIR + "-" + step


@dataclass(frozen=True)
class OutputLayout:
    root: Path

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    @property
    def train_data(self) -> Path:
        return self.data_dir / "train.jsonl"

    @property
    def eval_data(self) -> Path:
        return self.data_dir / "eval.jsonl"

    @property
    def data_cache(self) -> Path:
        return self.data_dir / "cache"

    @property
    def report(self) -> Path:
        return self.root / "validation_report.json"

    @property
    def log_file(self) -> Path:
        return self.root / "train.log"

    @property
    def tensorboard(self) -> Path:
        return self.root / "tensorboard"

    @property
    def samples(self) -> Path:
        return self.root / "samples.jsonl"

    @property
    def profile(self) -> Path:
        return self.root / "profile"

    @property
    def final(self) -> Path:
        return self.root / "final"

    @property
    def final_partial(self) -> Path:
        return self.root / "final.partial"

    @property
    def reload_reference(self) -> Path:
        return self.root / "final.partial.logits.safetensors"

    @property
    def run_identity(self) -> Path:
        return self.root / "run_identity.json"

    @property
    def legacy_run_identity(self) -> Path:
        """Where runs started before the rename recorded their identity (read when they resume)."""
        return self.root / "run_manifest.json"

    @property
    def rank_status(self) -> Path:
        return self.root / "rank_status"

    def rank_status_file(self, rank: str) -> Path:
        return self.rank_status / f"rank-{rank}.json"

    def heartbeat_file(self, rank: str) -> Path:
        return self.rank_status / f"heartbeat-{rank}.json"

    def heartbeat_files(self) -> list[Path]:
        return sorted(self.rank_status.glob("heartbeat-*.json"))

    def checkpoint(self, step: int) -> Path:
        return self.root / f"checkpoint-{step}"

    @staticmethod
    def is_complete(checkpoint: Path) -> bool:
        return (checkpoint / COMPLETE_MARKER).is_file()

    def checkpoints(self) -> list[tuple[int, Path]]:
        """Every checkpoint directory with its step, complete or not, in step order."""
        if not self.root.is_dir():
            return []
        found = []
        for child in self.root.iterdir():
            match = _CHECKPOINT_NAME.match(child.name)
            if match and child.is_dir():
                found.append((int(match.group(1)), child))
        return sorted(found)

    def set_aside(self, directory: Path, name: str) -> Path:
        """Rename `directory` to `name` in the output root (a timestamp added if taken): kept, out of sight."""
        target = self.root / name
        if target.exists():
            target = target.with_name(f"{target.name}.{time.strftime('%Y%m%d-%H%M%S')}")
        directory.rename(target)
        return target

    def set_aside_incomplete(self) -> list[Path]:
        """Rename every checkpoint without the completeness marker out of the trainer's sight (its rotation
        would count it, and a resume must never use it); nothing is deleted. Run by one process only."""
        moved = []
        for step, directory in self.checkpoints():
            if self.is_complete(directory):
                continue
            target = self.set_aside(directory, f"incomplete-checkpoint-{step}")
            logger.warning("set aside %s as %s: its save was interrupted, or its weights were not finite; "
                           "delete it once you have looked", directory, target)  # fmt: skip
            moved.append(target)
        return moved
