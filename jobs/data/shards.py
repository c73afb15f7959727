"""Parallel validation of one large uncompressed .jsonl file, on every CPU the job may use.

The file is cut into byte ranges at line boundaries; forked workers validate one range each exactly as
the sequential pass would (same checks, same seeded split, same prepared records), and the parent
merges their reports, duplicate and leakage keys and prepared files in file order. Line numbers stay
exact: each worker counts its range's lines, and the parent offsets them.

If the workers disagree on the file's format (a mixed file), the parent validates the file again
sequentially, so that mixed-format errors point at the same lines as without sharding.
"""

from __future__ import annotations

import gc
import itertools
import multiprocessing
import os
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jobs.data.file_validator import FileValidator
from jobs.data.keys import KeyTable
from jobs.data.prepared import PreparedWriter
from jobs.data.readers import LineCounter, base_suffix

SHARD_MIN_BYTES = 32 << 20  # below this, forking costs more than it saves
MAX_WORKERS = 8

# Set in the parent just before forking, read by the workers: the validator whose settings, training
# index (for the leakage check of an eval file) and writer directory each shard starts from.
_PARENT: FileValidator | None = None


def worker_count() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cpus = os.cpu_count() or 1
    return max(1, min(cpus, MAX_WORKERS))


def can_shard(path: Path) -> bool:
    return (
        path.suffix == ".jsonl"
        and base_suffix(path) == ".jsonl"
        and worker_count() > 1
        and path.stat().st_size >= SHARD_MIN_BYTES
    )


def shard_ranges(path: Path, parts: int) -> list[tuple[int, int]]:
    """Byte ranges [start, end) that together cover the file, each starting at a line start."""
    size = path.stat().st_size
    bounds = [0]
    with open(path, "rb") as handle:
        for part in range(1, parts):
            handle.seek(max(size * part // parts, bounds[-1]))
            handle.readline()
            bounds.append(min(handle.tell(), size))
    bounds.append(size)
    return [(start, end) for start, end in itertools.pairwise(bounds) if end > start]


@dataclass
class ShardOutcome:
    """What one worker found in its range, with shard-relative line numbers."""

    validator: Any  # a FileValidator after its run (pickled back to the parent)
    lines: int
    prepared_dir: Path


def _validate_range(job: tuple[int, int, int]) -> ShardOutcome:
    number, start, end = job
    parent = _PARENT
    assert parent is not None
    # A worker lives for one shard: each record's objects are freed by reference counting, and a cycle (a
    # caught exception's traceback) only until it exits. The collector's passes would walk for nothing.
    gc.disable()
    directory = parent.writer.directory / f"shard-{number}"
    # The split's files and locked format, with key tables of its own (merged by the parent); an eval shard
    # looks records up in the (inherited) training index.
    split = replace(parent.split, files=list(parent.split.files), seen=KeyTable(), prompts=KeyTable(),
                    normalized=KeyTable())  # fmt: skip
    writer = PreparedWriter(directory)
    validator = FileValidator(parent.path, parent.role, parent.policy, writer, parent.leak, split=split)
    validator.quiet = True
    counter = LineCounter(parent.path, start, end)
    validator.run(counter)
    validator.writer.close()
    validator.checker = None  # compiled validators do not pickle; the parent needs none
    validator.leak = None  # not sent back: the parent has it
    validator.policy = replace(validator.policy, renderer=None)  # nor the tokenizer
    return ShardOutcome(validator=validator, lines=counter.lines, prepared_dir=directory)


def validate_in_shards(parent: FileValidator) -> bool:
    """Validate `parent`'s file in parallel into `parent`; False when the caller must go sequential."""
    global _PARENT  # noqa: PLW0603 - the fork hands it to the workers without pickling
    ranges = shard_ranges(parent.path, worker_count())
    _PARENT = parent
    try:
        with multiprocessing.get_context("fork").Pool(len(ranges)) as pool:
            outcomes = pool.map(_validate_range, [(i, s, e) for i, (s, e) in enumerate(ranges)])
    finally:
        _PARENT = None
    directories = [outcome.prepared_dir for outcome in outcomes]
    try:
        if len({_shape_key(o.validator) for o in outcomes if o.validator.shape is not None}) > 1:
            return False
        offset = 0
        outcomes.reverse()
        while outcomes:  # each shard's key tables are freed once merged: the parent never holds them twice
            outcome = outcomes.pop()
            parent.absorb(outcome.validator, offset)
            parent.writer.append_files(outcome.validator.writer)
            offset += outcome.lines
        return True
    finally:
        for directory in directories:
            shutil.rmtree(directory, ignore_errors=True)


def _shape_key(validator: FileValidator) -> tuple[str, str | None]:
    assert validator.shape is not None
    fmt, adapter = validator.shape
    return fmt.name, adapter.name if adapter else None
