"""Key tables: 12 bytes a record in arrays; repeats found by sorting once a split is read, across the
shards of a split; the training table as a lookup index for leakage."""

from __future__ import annotations

from jobs.data.keys import KeyIndex, KeyTable


def _table(*files: list[tuple[int, int]]) -> KeyTable:
    table = KeyTable()
    for number, rows in enumerate(files):
        table.start_file(number)
        for key, line in rows:
            table.add(key, line)
    return table


def test_repeats_are_counted_per_file_with_their_first_occurrence_in_reading_order() -> None:
    table = _table([(7, 1), (8, 2), (7, 5)], [(8, 1), (9, 2), (7, 3)])
    counts, examples = table.repeats()
    assert counts == {0: 1, 1: 2}
    assert [(table.lines[at], table.file_at(at), table.lines[first], table.file_at(first)) for at, first in examples] == [
        (5, 0, 1, 0), (1, 1, 2, 0), (3, 1, 1, 0)]  # fmt: skip
    assert table.nbytes == 6 * 12


def test_a_shard_extends_its_file_with_shifted_lines_and_128_bit_keys_are_folded() -> None:
    whole, shard = _table([(1 << 100 | 3, 1)]), KeyTable()
    shard.add(3, 2)
    whole.extend(shard, offset=10)
    assert list(whole.lines) == [1, 12] and whole.repeats()[0] == {0: 1}


def test_the_index_finds_the_first_record_of_a_digest_and_nothing_else() -> None:
    table = _table([(5, 3), (6, 4)], [(5, 9)])
    index = KeyIndex(table)
    assert index.find(5) == 0 and index.find(6) == 1 and index.find(7) is None
    assert index.where(1, ["a.jsonl", "b.jsonl"]) == {"train_line": 4, "train_file": "a.jsonl"}
    assert KeyIndex(KeyTable()).find(5) is None and KeyTable().repeats() == ({}, [])
