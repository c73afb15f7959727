"""Key tables: 20 bytes a record in flat buffers; repeats found by sorting once a split is read, across the
shards of a split; the training table as a lookup index for leakage. Keys are SHA-256 digests that a
crafted record cannot make collide."""

from __future__ import annotations

import random
from pathlib import Path

from dev.testing import write_jsonl
from jobs.data.keys import KeyIndex, KeyTable
from jobs.data.split import KEY_BYTES, canonical, digest
from jobs.data.validate import validate_dataset
from jobs.preflight.data import data_policy


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


def test_keys_equal_but_for_their_last_byte_are_two_keys() -> None:
    """Nothing folds a key to fewer bytes (the removed digest was 64 bits)."""
    table = _table([(1, 1), (2, 2)])
    assert table.repeats() == ({}, [])


# The digest of the removed compiled scan (jobs/data/_scan.c until 3180f5e), in Python: a murmur3-style
# stream hash over the record's structure and string bytes, unseeded. Its round is invertible, so two records
# whose prefixes differ can be given one digest by choosing the next 8 bytes of the second.
_M, _C1, _C2 = (1 << 64) - 1, 0x87C37B91114253D5, 0x4CF5AD432745937F
_SAFE = bytes(c for c in range(0x20, 0x7F) if c not in b'"\\')  # printable, nothing JSON escapes


def _rotl(x: int, r: int) -> int:
    return ((x << r) | (x >> (64 - r))) & _M


def _round(h: int, word: int) -> int:
    return (_rotl(h ^ (_rotl((word * _C1) & _M, 31) * _C2) & _M, 27) * 5 + 0x52DCE729) & _M


def _unround_word(target: int) -> int:
    """The word whose round input (before the xor) is `target`."""
    return (_rotl((target * pow(_C2, -1, 1 << 64)) & _M, 33) * pow(_C1, -1, 1 << 64)) & _M


def _stream(record: dict[str, str]) -> bytes:
    """What the scan digested: structure outside strings, string bytes between 0xFF and 0xFE."""
    parts = [b"\xff" + key.encode() + b"\xfe:\xff" + value.encode() + b"\xfe" for key, value in record.items()]
    return b"{" + b",".join(parts) + b"}"


def _old_digest(data: bytes) -> int:
    h = 0
    for start in range(0, len(data), 8):
        h = _round(h, int.from_bytes(data[start : start + 8], "little"))
    return h ^ len(data)  # the finaliser that followed is a bijection: equal here, equal there


def _forged_pair() -> tuple[dict[str, str], dict[str, str]]:
    """Two different preference records with one old digest, found by search (a few thousand tries)."""
    head = _stream({"prompt": ""})[:-2]  # up to the prompt's first byte
    filler = (-len(head)) % 8 + 8  # the forged word starts on a word boundary
    a_text, b_text = "a" * filler, "b" * filler
    state_a, state_b = (_old_digest_words(head + text.encode()) for text in (a_text, b_text))
    rng = random.Random(0)
    while True:
        word_a = bytes(rng.choice(_SAFE) for _ in range(8))
        wanted = state_a ^ state_b ^ (_rotl((int.from_bytes(word_a, "little") * _C1) & _M, 31) * _C2) & _M
        word_b = _unround_word(wanted).to_bytes(8, "little")
        if all(byte in _SAFE for byte in word_b):
            tail = " What is 2+2?"
            return ({"prompt": a_text + word_a.decode() + tail, "chosen": "4", "rejected": "5"},
                    {"prompt": b_text + word_b.decode() + tail, "chosen": "4", "rejected": "5"})  # fmt: skip


def _old_digest_words(data: bytes) -> int:
    """The stream hash's state after whole words (no length, no partial word)."""
    h = 0
    for start in range(0, len(data) // 8 * 8, 8):
        h = _round(h, int.from_bytes(data[start : start + 8], "little"))
    return h


def test_a_forged_collision_is_neither_a_duplicate_nor_a_leak(tmp_path: Path) -> None:
    """Records crafted to collide under the removed 64-bit digest made a chosen eval record a "leak" (and
    TRAIN_DROP_INVALID dropped it) or a "duplicate". With SHA-256 keys they are two records."""
    forged, target = _forged_pair()
    assert forged != target and _old_digest(_stream(forged)) == _old_digest(_stream(target))
    assert digest(canonical(forged)) != digest(canonical(target))
    together = write_jsonl(tmp_path / "both.jsonl", [forged, target])
    result = validate_dataset(together, None, data_policy("dpo"), tmp_path / "one")
    assert result.refused is None and result.files[0].duplicates["count"] == 0
    train = write_jsonl(tmp_path / "train.jsonl", [forged, {"prompt": "Other?", "chosen": "a", "rejected": "b"}])
    evaluation = write_jsonl(tmp_path / "eval.jsonl", [target])
    result = validate_dataset(train, evaluation, data_policy("dpo"), tmp_path / "two")
    assert result.refused is None and result.files[1].leakage["count"] == 0 and result.split["eval"] == 1
