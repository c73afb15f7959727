"""Key tables: what validation remembers of each record, without a Python object per record.

A table holds one 8-byte digest and one 4-byte line number per record, in two arrays (12 bytes a
record), and which file each run of records came from. Repeats (exact duplicates, duplicate prompts) are
found once a split has been read, by sorting the digests; the training records' table becomes a sorted
index that evaluation records are looked up in (leakage). 64-bit digests: the chance of one false match
among 10 million records is about 3 in a million.

numpy is imported where a finished table is sorted or merged, not while records are read: its BLAS
threads spin for a while after they start, on the CPUs the shard workers need.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

DIGEST_MASK = (1 << 64) - 1
EXAMPLES = 5


@dataclass
class KeyTable:
    """Digests and lines of the records of one split, in reading order."""

    keys: array[int] = field(default_factory=lambda: array("Q"))
    lines: array[int] = field(default_factory=lambda: array("I"))
    files: list[tuple[int, int]] = field(default_factory=list)  # (first position, file number), ascending

    def start_file(self, number: int) -> None:
        if not self.files or self.files[-1][1] != number:
            self.files.append((len(self.keys), number))

    def add(self, key: int, line: int) -> None:
        self.keys.append(key & DIGEST_MASK)
        self.lines.append(line)

    def extend(self, other: KeyTable, offset: int) -> None:
        """Append a later part of the same file (a shard) whose lines start `offset` lines on."""
        import numpy as np

        self.keys.extend(other.keys)
        if len(other.lines):
            self.lines.frombytes((np.frombuffer(other.lines, dtype=np.uint32) + np.uint32(offset)).tobytes())

    def file_at(self, position: int) -> int:
        return self.files[bisect_right(self.files, (position, 1 << 62)) - 1][1]

    @property
    def nbytes(self) -> int:
        return self.keys.itemsize * len(self.keys) + self.lines.itemsize * len(self.lines)

    def repeats(self) -> tuple[dict[int, int], list[tuple[int, int]]]:
        """Records whose digest came earlier: their count per file number, and the first EXAMPLES of them
        in reading order as (position, position of the first record with that digest)."""
        import numpy as np

        keys = np.frombuffer(self.keys, dtype=np.uint64) if len(self.keys) else np.zeros(0, np.uint64)
        if len(keys) < 2:
            return {}, []
        # 17 bytes a record while it runs: the order (8), the sorted digests (8), the repeat flags (1).
        order = np.argsort(keys, kind="stable")  # equal digests stay in reading order
        ordered = keys[order]
        repeat = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1  # sorted indices of the repeats (few)
        positions = order[repeat]
        firsts = order[np.searchsorted(ordered, ordered[repeat], side="left")]  # each group's first record
        del ordered
        bounds = np.array([first for first, _ in self.files] + [len(keys)])
        counts = np.histogram(positions, bins=bounds)[0] if len(positions) else np.zeros(len(self.files), int)
        per_file = {number: int(c) for (_, number), c in zip(self.files, counts, strict=True) if c}
        shown = np.argsort(positions)[:EXAMPLES]
        return per_file, [(int(positions[i]), int(firsts[i])) for i in shown]


@dataclass
class LeakIndex:
    """The training split's records, for the leakage check of evaluation records."""

    exact: KeyIndex
    normalized: KeyIndex
    files: list[str]


class KeyIndex:
    """A finished table, sorted for lookups: where a digest first occurred, if it did."""

    def __init__(self, table: KeyTable) -> None:
        import numpy as np

        keys = np.frombuffer(table.keys, dtype=np.uint64) if len(table.keys) else np.zeros(0, np.uint64)
        self._order = np.argsort(keys, kind="stable")
        self._sorted = keys[self._order]
        self.table = table

    def find(self, key: int) -> int | None:
        """The position of the first record with this digest, or None."""
        import numpy as np

        digest = np.uint64(key & DIGEST_MASK)
        at = int(np.searchsorted(self._sorted, digest))
        if at < len(self._sorted) and self._sorted[at] == digest:
            return int(self._order[at])
        return None

    def where(self, position: int, files: list[str]) -> dict[str, Any]:
        return {"train_line": self.table.lines[position], "train_file": files[self.table.file_at(position)]}
