"""Key tables: what validation remembers of each record, without a Python object per record.

A table holds one 16-byte key (jobs/data/split.py) and one 4-byte line number per record, in two flat
buffers (20 bytes a record), and which file each run of records came from. Repeats (exact duplicates,
duplicate prompts) are found once a split has been read, by sorting the keys; the training records'
table becomes a sorted index that evaluation records are looked up in (leakage).

numpy is imported where a finished table is sorted or merged, not while records are read: its BLAS
threads spin for a while after they start, on the CPUs the shard workers need.
"""

from __future__ import annotations

from array import array
from bisect import bisect_right
from dataclasses import dataclass, field
from typing import Any

from jobs.data.split import KEY_BYTES

EXAMPLES = 5
_KEY_DTYPE = f"S{KEY_BYTES}"  # numpy compares, sorts and searches fixed-size byte strings as unsigned bytes


@dataclass
class KeyTable:
    """Keys and lines of the records of one split, in reading order."""

    keys: bytearray = field(default_factory=bytearray)
    lines: array[int] = field(default_factory=lambda: array("I"))
    files: list[tuple[int, int]] = field(default_factory=list)  # (first position, file number), ascending

    def __len__(self) -> int:
        return len(self.lines)

    def start_file(self, number: int) -> None:
        if not self.files or self.files[-1][1] != number:
            self.files.append((len(self), number))

    def add(self, key: bytes, line: int) -> None:
        self.keys += key
        self.lines.append(line)

    def extend(self, other: KeyTable, offset: int) -> None:
        """Append a later part of the same file (a shard) whose lines start `offset` lines on."""
        import numpy as np

        self.keys += other.keys
        if len(other.lines):
            self.lines.frombytes((np.frombuffer(other.lines, dtype=np.uint32) + np.uint32(offset)).tobytes())

    def file_at(self, position: int) -> int:
        return self.files[bisect_right(self.files, (position, 1 << 62)) - 1][1]

    @property
    def nbytes(self) -> int:
        return len(self.keys) + self.lines.itemsize * len(self.lines)

    def sorted_keys(self) -> tuple[Any, Any]:
        """(order, keys in that order): equal keys stay in reading order."""
        import numpy as np

        keys = np.frombuffer(self.keys, dtype=_KEY_DTYPE)
        order = np.argsort(keys, kind="stable")
        return order, keys[order]

    def repeats(self) -> tuple[dict[int, int], list[tuple[int, int]]]:
        """Records whose key came earlier: their count per file number, and the first EXAMPLES of them
        in reading order as (position, position of the first record with that key)."""
        import numpy as np

        if len(self) < 2:
            return {}, []
        order, ordered = self.sorted_keys()
        repeat = np.flatnonzero(ordered[1:] == ordered[:-1]) + 1  # sorted indices of the repeats (few)
        positions = order[repeat]
        firsts = order[np.searchsorted(ordered, ordered[repeat], side="left")]  # each group's first record
        del ordered
        bounds = np.array([first for first, _ in self.files] + [len(self)])
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
    """A finished table, sorted for lookups: where a key first occurred, if it did."""

    def __init__(self, table: KeyTable) -> None:
        self._order, self._sorted = table.sorted_keys()
        self.table = table

    def find(self, key: bytes) -> int | None:
        """The position of the first record with this key, or None."""
        import numpy as np

        target = np.array(key, dtype=_KEY_DTYPE)
        at = int(np.searchsorted(self._sorted, target))
        # Compared as numpy's: an element read out as Python bytes loses its trailing zero bytes.
        if (self._sorted[at : at + 1] == target).any():
            return int(self._order[at])
        return None

    def where(self, position: int, files: list[str]) -> dict[str, Any]:
        return {"train_line": self.table.lines[position], "train_file": files[self.table.file_at(position)]}
