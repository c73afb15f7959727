"""The compiled per-record scan: hygiene screen, key count and content digest, and its Python stand-in."""

from __future__ import annotations

import json
import random
from pathlib import Path

import orjson
import pytest

import jobs.data.file_validator
from jobs.data import scan as scan_module
from jobs.data.formats import FORMATS
from jobs.data.hygiene import KIND_BITS, TEXT_CHECKS, hygiene
from jobs.data.scan import COMPILED, EVERY_KIND, fold, fold_python, plain, plain_args, plain_python, scan, scan_python
from jobs.data.split import goes_to_eval, normalized_key, prompt_key
from jobs.data.validate import validate_dataset
from jobs.preflight import data_policy

# Characters of every hygiene kind and every way JSON writes text: escapes, quotes, non-BMP (a surrogate
# pair when escaped), mojibake's pieces, whitespace.
ALPHABET = [
    "a", "Z", " ", "\n", "\t", "\r", "\\", '"', "/", "\x00", "\x08", "\x0c", "\x1f", "\x7f", "\x85", "\u202b",
    "\u2067", "\u200b", "\u200d", "\u2060", "\ufeff", "\ufffd", "\ue000", "\uf8ff", "\u00c3", "\u00a9", "\u00e2",
    "\u20ac", "\u2122", "\u00c2", "\u0152", "é", "中", "\U0001f600", "\u2028", "plain words ",
]  # fmt: skip


def _texts(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24))) for _ in range(count)]


def _spellings(record: dict[str, str]) -> list[bytes]:
    """One record as orjson, Python's json (ASCII escapes, spaces) and pretty-printed JSON write it."""
    return [
        orjson.dumps(record),
        json.dumps(record).encode(),
        json.dumps(record, ensure_ascii=False, indent=2).encode(),
        json.dumps(record).replace("/", "\\/").encode(),  # as PHP and pandas write slashes
    ]


def test_the_compiled_scan_is_built() -> None:
    assert COMPILED, "jobs/data/_scan.c is not built: `make` builds it (scripts/build-ext.sh) where cc exists"


def test_the_screen_never_misses_a_kind_the_exact_checks_find() -> None:
    bit = {message: KIND_BITS[kind] for kind, message in TEXT_CHECKS.items()}
    for text in _texts(3000):
        record = {"text": text}
        exact = sum({bit[f.message] for f in hygiene(record, FORMATS["text"], EVERY_KIND)})
        for written in _spellings(record):
            assert exact & ~scan(written)[0] == 0, (text, written)
        assert exact & ~scan_python(orjson.dumps(record))[0] == 0, text  # the stand-in reads canonical JSON


def test_one_record_has_one_digest_however_it_is_written() -> None:
    for text in _texts(1000, seed=1):
        record = {"prompt": text, "chosen": text[::-1] + "x", "rejected": "y"}
        digests = {scan(written)[2] for written in _spellings(record)}
        assert len(digests) == 1, (text, digests)
    escaped = b'{"text":"caf\\u00E9 \\uD83D\\uDE00"}'  # upper-case hex, a surrogate pair
    assert scan(escaped)[2] == scan(orjson.dumps({"text": "café \U0001f600"}))[2]


@pytest.mark.parametrize(
    ("one", "other"),
    [
        pytest.param({"a": "bc"}, {"a": "b", "c": ""}, id="a-string-split-in-two"),
        pytest.param({"a": 'b","c'}, {"a": "b", "c": ""}, id="quotes-inside-a-string"),
        pytest.param({"ab": "c"}, {"a": "bc"}, id="key-and-value-boundary"),
        pytest.param({"a": "b"}, {"a": "B"}, id="case"),
        pytest.param({"a": "b c"}, {"a": "bc "}, id="spaces-inside-strings-count"),
        pytest.param({"a": ["b"]}, {"a": "b"}, id="structure"),
    ],
)
def test_different_records_have_different_digests(one: dict, other: dict) -> None:
    assert scan(orjson.dumps(one))[2] != scan(orjson.dumps(other))[2]


def test_the_key_count_sees_a_repeated_key() -> None:
    nested = b'{"prompt": "a", "chosen": {"x": "y", "z": 1}, "rejected": "c"}'
    assert scan(nested)[1] == 3  # the keys of nested objects are not counted
    assert scan(b'{"prompt":"a","chosen":"b","rejected":"c","chosen":"d"}')[1] == 4
    assert scan(b'{"prompt":"a:b,\\"c\\":"}')[1] == 1  # colons inside strings are text


def test_fold_and_the_prompt_key_match_python(monkeypatch: pytest.MonkeyPatch) -> None:
    texts = [*_texts(2000, seed=2), "UPPER lower\t\r\nÄ", "lone \ud800 surrogate", "long " * 5000]
    compiled = [prompt_key(text) for text in texts]
    for text in texts:
        assert fold(text) == fold_python(text), text
    monkeypatch.setattr(scan_module, "compiled_prompt_key", None)
    assert [prompt_key(text) for text in texts] == compiled == [normalized_key((text,)) for text in texts]


def test_without_the_compiled_scan_validation_finds_the_same(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [
        {"prompt": f"q{i} {t}", "chosen": f"good {t}", "rejected": f"bad {i}"} for i, t in enumerate(_texts(300))
    ]
    records += records[:20]  # exact duplicates
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))  # ASCII escapes, spaces: not canonical
    policy = data_policy("dpo", eval_split=0.2, drop_invalid=True, max_invalid_fraction=1.0)
    compiled = validate_dataset(data, None, policy, tmp_path / "compiled")
    monkeypatch.setattr(jobs.data.file_validator, "COMPILED", False)
    monkeypatch.setattr(jobs.data.file_validator, "scan", scan_python)
    monkeypatch.setattr(jobs.data.file_validator, "plain", plain_python)
    monkeypatch.setattr(scan_module, "_fold", fold_python)
    monkeypatch.setattr(scan_module, "compiled_prompt_key", None)
    python = validate_dataset(data, None, policy, tmp_path / "python")
    for ours, theirs in zip(compiled.files, python.files, strict=True):
        assert (ours.valid, ours.invalid_records, ours.duplicates, ours.duplicate_prompts, ours.warnings) == (
            theirs.valid, theirs.invalid_records, theirs.duplicates, theirs.duplicate_prompts, theirs.warnings
        )  # fmt: skip
    assert compiled.files[0].duplicates["count"] == 20 and compiled.files[0].warnings
    assert compiled.split == python.split
    for side in ("train", "eval"):
        ours, theirs = (tmp_path / name / f"{side}.jsonl" for name in ("compiled", "python"))
        assert [json.loads(x) for x in ours.read_bytes().splitlines()] == [
            json.loads(x) for x in theirs.read_bytes().splitlines()
        ]  # bytes: str.splitlines would split at U+2028 in the texts


# Lines of one plain format: well-formed records and every way a line can differ from one (JSON the parser
# refuses, keys out of order or repeated, other value types, blank or equal texts, whitespace that only
# Python's str.isspace knows, characters of every hygiene kind, escapes of every form).
_TEXTS = ["a question?", " padded ", "\u00a0nbsp-led", "tail\u3000", "\u2028", "\t\n", "", "same", "same ",
          "caf\u00e9 \U0001f600", "\ufffd", "x\u202ey", "\x1f", "Ã©", "quote \" and \\ slash /"]  # fmt: skip
_BROKEN = [b'{"prompt":"a\\ud800","chosen":"b","rejected":"c"}', b'{"prompt":"a\\x","chosen":"b","rejected":"c"}',
           b'{"prompt":"a\x01","chosen":"b","rejected":"c"}', b'{"prompt":"\xc0\xaf","chosen":"b","rejected":"c"}',
           b'{"prompt":"a","chosen":"b","rejected":"c"', b'{"prompt":"a","chosen":"b","rejected":"c"} x',
           b'{"prompt":"a","chosen":"b","rejected":"c","chosen":"d"}', b'{"chosen":"b","prompt":"a","rejected":"c"}',
           b'{"prompt":"a","chosen":1,"rejected":"c"}', b'{"prompt":"a","chosen":"b","rejected":"c","x":null}',
           b'{"prompt" : "a" , "chosen":"b",\t"rejected":"c"}  ', b'{"prompt":"\\u0061","chosen":"A","rejected":"a"}',
           b'{"prompt":"\\uD83D\\uDE00","chosen":"b\\/","rejected":"b/ "}']  # fmt: skip


_CLEAN = ["yes", "no", "Paris is the capital.", "café ☕ naïve", "line\nbreak\ttab", "emoji \U0001f600 ok"]


def _lines(seed: int) -> list[bytes]:
    rng = random.Random(seed)
    lines = []
    for i in range(1500):
        chosen, rejected = (rng.choice(_CLEAN if rng.random() < 0.7 else _TEXTS) for _ in range(2))
        record = {"prompt": f"{i} {rng.choice(_TEXTS)}", "chosen": chosen, "rejected": rejected}
        lines.append(rng.choice(_spellings(record)).replace(b"\n", b" "))
    return lines + _BROKEN * 3


@pytest.mark.parametrize("split", [0.0, 0.3])
def test_the_line_check_agrees_with_the_full_path(
    split: float, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = tmp_path / "d.jsonl"
    data.write_bytes(b"\n".join([b'{"prompt":"first","chosen":"locks","rejected":"the format"}', *_lines(3)]) + b"\n")
    policy = data_policy("dpo", eval_split=split, drop_invalid=True, max_invalid_fraction=1.0)
    fast = validate_dataset(data, None, policy, tmp_path / "fast")
    monkeypatch.setattr(jobs.data.file_validator, "plain", plain_python)
    full = validate_dataset(data, None, policy, tmp_path / "full")
    ours, theirs = fast.files[0], full.files[0]
    assert (ours.valid, ours.invalid_records, ours.errors, ours.warnings, ours.dropped) == (
        theirs.valid, theirs.invalid_records, theirs.errors, theirs.warnings, theirs.dropped
    )  # fmt: skip
    assert (ours.duplicates, ours.duplicate_prompts, fast.split) == (
        theirs.duplicates,
        theirs.duplicate_prompts,
        full.split,
    )
    assert list(fast.char_lengths) == list(full.char_lengths)
    for side in ("train", "eval"):
        ours_file, theirs_file = (tmp_path / name / f"{side}.jsonl" for name in ("fast", "full"))
        assert ours_file.exists() == theirs_file.exists() == (side == "train" or split > 0)
        assert not ours_file.exists() or ours_file.read_bytes() == theirs_file.read_bytes()
    assert 300 < ours.valid < 1400 and ours.invalid_records > 100  # both kinds of line are there


def test_the_line_check_is_for_formats_whose_schema_it_knows() -> None:
    checked = {name for name, fmt in FORMATS.items() if plain_args(fmt) is not None}
    assert checked == {"preference", "prompt_completion", "unpaired_preference", "implicit_preference", "text"}
    names, kinds, prompt, chosen, rejected = plain_args(FORMATS["unpaired_preference"]) or ((), b"", 0, 0, 0)
    assert (names, kinds, prompt, chosen, rejected) == (("prompt", "completion", "label"), b"ttb", 0, -1, -1)
    line = b'{"prompt": "p", "completion": "c", "label": false}'
    assert plain(line, names, kinds, prompt, chosen, rejected, 42, 0.0) is not None
    assert plain(line.replace(b"false", b'"no"'), names, kinds, prompt, chosen, rejected, 42, 0.0) is None


def test_the_line_checks_draw_is_the_splits() -> None:
    args = plain_args(FORMATS["preference"]) or ((), b"", 0, 0, 0)
    for i in range(2000):
        line = orjson.dumps({"prompt": f"Question {i}", "chosen": "yes", "rejected": "no"})
        for seed, fraction in ((7, 0.1), (123, 0.5), (0, 0.0)):
            _, key, _, held_out = plain(line, *args, seed, fraction) or (0, None, 0, None)
            assert key == prompt_key(f"Question {i}") and held_out == goes_to_eval(key, fraction, seed)
