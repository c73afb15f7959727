"""Checkpoint integrity: each file's size and checksum in the completeness marker, checked before a resume.

A checkpoint damaged after it was marked complete (a file truncated by a copy or a sync that died, a bad
block on the volume) was resumed from, and crashed every restart (SafetensorError, a traceback, exit 1).
Now the training ranks hash the checkpoint's files once every rank has written its part, each rank a share
of them (balanced by size), and rank 0 writes the marker with every file's size and xxh3-128 checksum
(jobs/train/guards/checkpoints.py). Before a run resumes, preflight checks the newest marked checkpoint:
one whose files are missing, resized or changed is set aside as `damaged-checkpoint-<step>` (named in the
log, never deleted), and the next newest is checked, until one matches.

xxh3 (the `xxhash` package `datasets` already uses) hashes at memory speed, several GB/s a core, so the
check costs about what reading the files costs; SHA-256 is 4x slower and guards against no one here. A
marker from before this change holds only the step: it counts as complete and is not checked.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xxhash

from jobs.layout import COMPLETE_MARKER, OutputLayout

logger = logging.getLogger(__name__)

CHUNK = 8 << 20
CHECKSUM = "xxh3_128"
HASH_THREADS = 4  # reads and xxhash both release the GIL: a few threads keep a fast volume busy


@dataclass(frozen=True)
class Listing:
    """A checkpoint's files (paths relative to it, POSIX) and sizes, as rank 0 found them after the save."""

    files: dict[str, int]

    def shares(self, ranks: int) -> list[list[str]]:
        """The files split among `ranks`, largest first to the least loaded: each rank hashes about as many
        bytes (under ZeRO every rank wrote a shard; under DDP rank 0 wrote nearly everything)."""
        loads = [0] * ranks
        split: list[list[str]] = [[] for _ in range(ranks)]
        for name, size in sorted(self.files.items(), key=lambda item: (-item[1], item[0])):
            rank = loads.index(min(loads))
            split[rank].append(name)
            loads[rank] += size
        return split


def list_checkpoint(directory: Path) -> Listing:
    files = {}
    for path in sorted(directory.rglob("*")):
        if path.is_file() and path.name != COMPLETE_MARKER:
            files[path.relative_to(directory).as_posix()] = path.stat().st_size
    return Listing(files)


def file_checksum(path: Path) -> str:
    digest = xxhash.xxh3_128()
    buffer = bytearray(CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:
        while read := handle.readinto(buffer):
            digest.update(view[:read])
    return digest.hexdigest()


def checksums(directory: Path, names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Each named file's size and checksum."""

    def entry(name: str) -> tuple[str, dict[str, Any]]:
        path = directory / name
        return name, {"size": path.stat().st_size, CHECKSUM: file_checksum(path)}

    with ThreadPoolExecutor(HASH_THREADS) as pool:
        return dict(pool.map(entry, list(names)))


def write_marker(directory: Path, step: int, files: dict[str, dict[str, Any]],
                 seconds: dict[str, float] | None = None) -> None:  # fmt: skip
    """The completeness marker, written whole or not at all (a rename), after its files are on disk;
    `seconds`: what writing the checkpoint and hashing it took (make bench compares them with a check)."""
    marker = directory / COMPLETE_MARKER
    partial = marker.with_suffix(".partial")
    body = {"step": step, "checksum": CHECKSUM, "files": dict(sorted(files.items())), "seconds": seconds or {}}
    with open(partial, "w", encoding="utf-8") as handle:
        json.dump(body, handle, indent=1)
        handle.flush()
        os.fsync(handle.fileno())
    partial.replace(marker)


def damage(directory: Path) -> list[str]:
    """What no longer matches the marker: missing, resized or changed files (sizes first: they cost nothing)."""
    try:
        recorded = json.loads((directory / COMPLETE_MARKER).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as error:
        return [f"its {COMPLETE_MARKER} marker cannot be read ({error})"]
    if not isinstance(recorded, dict):  # the step alone: written before checksums were recorded
        logger.info("%s: its marker records no checksums (an older version wrote it): not checked", directory)
        return []
    files: dict[str, dict[str, Any]] = recorded.get("files", {})
    found = []
    for name, entry in files.items():
        path = directory / name
        if not path.is_file():
            found.append(f"{name} is missing")
        elif (size := path.stat().st_size) != entry["size"]:
            found.append(f"{name} has {size} bytes, {entry['size']} when saved")
    if found:
        return found
    now = checksums(directory, files)
    return [f"{name} changed since it was saved (checksum)" for name in files if now[name] != files[name]]


def set_aside_damaged(layout: OutputLayout) -> list[Path]:
    """Check the marked checkpoints newest first, and rename each damaged one out of the resume's sight,
    until one matches its marker. Returns the ones set aside. Run by one process only, before training."""
    moved = []
    for step, directory in reversed(layout.checkpoints()):
        if not layout.is_complete(directory):
            continue
        started = time.monotonic()
        problems = damage(directory)
        if not problems:
            logger.info("%s matches its marker (checked in %.1f s)", directory, time.monotonic() - started)
            break
        target = layout.set_aside(directory, f"damaged-checkpoint-{step}")
        logger.error("set aside %s as %s: %s; the run resumes from the newest checkpoint that matches. Delete it "
                     "once you have looked", directory, target, "; ".join(problems[:5]))  # fmt: skip
        moved.append(target)
    return moved
