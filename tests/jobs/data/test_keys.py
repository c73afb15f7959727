"""Key tables: 20 bytes a record in flat buffers; repeats found by sorting once a split is read, across the
shards of a split; the training table as a lookup index for leakage. Keys are BLAKE2b digests that a
crafted record cannot make collide."""

from __future__ import annotations

from pathlib import Path

from jobs.data.keys import KeyIndex, KeyTable
from jobs.data.split import KEY_BYTES, canonical, digest
from jobs.data.validate import validate_dataset
from jobs.preflight import data_policy
from tests.helpers import write_jsonl


def _key(n: int) -> bytes:
    return n.to_bytes(KEY_BYTES, "big")  # small numbers: keys whose bytes end in zeros, as numpy would strip


def _table(*files: list[tuple[int, int]]) -> KeyTable:
    table = KeyTable()
    for number, rows in enumerate(files):
        table.start_file(number)
        for key, line in rows:
            table.add(_key(key), line)
    return table


def test_repeats_are_counted_per_file_with_their_first_occurrence_in_reading_order() -> None:
    table = _table([(7, 1), (8, 2), (7, 5)], [(8, 1), (9, 2), (7, 3)])
    counts, examples = table.repeats()
    assert counts == {0: 1, 1: 2}
    assert [(table.lines[at], table.file_at(at), table.lines[first], table.file_at(first)) for at, first in examples] == [
        (5, 0, 1, 0), (1, 1, 2, 0), (3, 1, 1, 0)]  # fmt: skip
    assert table.nbytes == 6 * 20


def test_a_shard_extends_its_file_with_shifted_lines() -> None:
    whole, shard = _table([(3, 1)]), KeyTable()
    shard.add(_key(3), 2)
    whole.extend(shard, offset=10)
    assert list(whole.lines) == [1, 12] and whole.repeats()[0] == {0: 1}


def test_the_index_finds_the_first_record_of_a_key_and_nothing_else() -> None:
    table = _table([(5, 3), (6, 4)], [(5, 9), (1 << 8, 1)])
    index = KeyIndex(table)
    assert index.find(_key(5)) == 0 and index.find(_key(6)) == 1 and index.find(_key(7)) is None
    assert index.find(_key(1 << 8)) == 3 and index.find(_key(1)) is None  # trailing zero bytes count
    assert index.where(1, ["a.jsonl", "b.jsonl"]) == {"train_line": 4, "train_file": "a.jsonl"}
    assert KeyIndex(KeyTable()).find(_key(5)) is None and KeyTable().repeats() == ({}, [])


def test_keys_differ_in_their_first_bytes_alone() -> None:
    """Two keys equal in their first 8 bytes are two keys: nothing folds them to 64 bits."""
    table = _table([(1, 1), (2, 2)])
    assert table.repeats() == ({}, [])


def test_a_forged_collision_of_the_old_64_bit_digest_is_not_a_duplicate(tmp_path: Path) -> None:
    """Two different records that the compiled scan's 64-bit digest could be made to map to one value (found
    in 0.2 s): with BLAKE2b keys they are two records, neither a duplicate nor a leak."""
    chosen = {"prompt": "What is 2+2?", "chosen": "4", "rejected": "5"}
    forged = {"prompt": "What is 2+2?", "chosen": "4 ", "rejected": "5"}
    assert digest(canonical(chosen)) != digest(canonical(forged))
    train = write_jsonl(tmp_path / "train.jsonl", [forged, {"prompt": "Other?", "chosen": "a", "rejected": "b"}])
    evaluation = write_jsonl(tmp_path / "eval.jsonl", [chosen])
    result = validate_dataset(train, evaluation, data_policy("dpo"), tmp_path / "out")
    assert result.refused is not None  # an exact leak after normalising whitespace: the data's real overlap
    assert [file.leakage["exact"] for file in result.files] == [0, 0]
