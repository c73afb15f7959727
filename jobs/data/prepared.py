"""The prepared files: the accepted records, written as training will read them.

Records go to `<side>.jsonl.partial` while validation runs; `commit` renames them into place, so a
refused or interrupted validation never leaves a prepared file that looks finished.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path
from typing import IO, Any

WRITE_BUFFER = 1 << 20


class PreparedWriter:
    """Writes accepted records to `<name>.jsonl.partial`; `commit` renames them into place."""

    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.directory = directory
        self.paths = {side: directory / f"{side}.jsonl" for side in ("train", "eval")}
        self.counts = {"train": 0, "eval": 0}
        # Each record's side in writing order (1: eval), so that a mixture can take a source's first records
        # from its two files (`take`). One byte a record.
        self.sides = bytearray()
        self._handles: dict[str, IO[bytes]] = {}
        for path in self.paths.values():  # left by an interrupted run: records are appended from here on
            path.with_suffix(".partial").unlink(missing_ok=True)

    def _handle(self, side: str) -> IO[bytes]:
        handle = self._handles.get(side)
        if handle is None:
            # A large buffer: records of a few KB each would otherwise flush every other write.
            partial = self.paths[side].with_suffix(".partial")
            handle = self._handles[side] = open(partial, "ab", buffering=WRITE_BUFFER)  # noqa: SIM115
        return handle

    def write(self, side: str, line: bytes) -> None:
        """One record's JSON, ending with its newline."""
        (self._handles.get(side) or self._handle(side)).write(line)
        self.counts[side] += 1
        self.sides.append(side == "eval")

    def append_files(self, other: PreparedWriter) -> None:
        """Append another (closed) writer's partial files, in order: how shards are joined. A side this writer
        has nothing in yet takes the other's file by renaming it, without a copy."""
        for side, path in other.paths.items():
            partial = path.with_suffix(".partial")
            if not (other.counts[side] and partial.exists()):
                continue
            mine = self.paths[side].with_suffix(".partial")
            if self.counts[side] == 0 and side not in self._handles and not mine.exists():
                partial.replace(mine)
            else:
                copy_into(partial, self._handle(side))
            self.counts[side] += other.counts[side]
        self.sides.extend(other.sides)

    def take(self, source: PreparedWriter, count: int) -> None:
        """Append the first `count` records `source` wrote, in its order, each to the side it went to; all of
        them by whole files (`append_files`)."""
        source.close()
        if count >= len(source.sides):
            self.append_files(source)
            return
        partials = {side: path.with_suffix(".partial") for side, path in source.paths.items()}
        with contextlib.ExitStack() as stack:
            readers = {side: stack.enter_context(open(path, "rb")) for side, path in partials.items() if path.exists()}
            for flag in source.sides[:count]:
                side = "eval" if flag else "train"
                self.write(side, readers[side].readline())

    def close(self) -> None:
        for handle in self._handles.values():
            handle.close()
        self._handles = {}

    def commit(self) -> None:
        self.close()
        for path in self.paths.values():
            partial = path.with_suffix(".partial")
            if partial.exists():
                partial.replace(path)
            else:
                path.unlink(missing_ok=True)

    def discard(self) -> None:
        self.close()
        for path in self.paths.values():
            path.with_suffix(".partial").unlink(missing_ok=True)


def copy_into(source: Path, handle: Any) -> None:
    """Append a file to an open binary handle, in the kernel where it can."""
    handle.flush()
    with open(source, "rb") as src:
        remaining = os.fstat(src.fileno()).st_size
        with contextlib.suppress(OSError, AttributeError):
            while remaining > 0:
                copied = os.copy_file_range(src.fileno(), handle.fileno(), remaining)
                if copied == 0:
                    break
                remaining -= copied
        if remaining > 0:  # no copy_file_range here (other OS, other file system): copy in user space
            src.seek(os.fstat(src.fileno()).st_size - remaining)
            shutil.copyfileobj(src, handle, 1 << 20)
