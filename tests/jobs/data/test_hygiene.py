"""Character hygiene: the screen of each record's canonical JSON, and the exact checks of the kinds it points to."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dev.testing import write_jsonl
from jobs.data.formats import FORMATS
from jobs.data.hygiene import TEXT_CHECKS, hygiene, screened_kinds
from jobs.data.split import canonical
from jobs.data.validate import validate_dataset
from jobs.preflight.data import data_policy


@pytest.mark.parametrize(
    ("text", "kinds"),
    [
        pytest.param("plain ascii", [], id="clean"),
        pytest.param("naïve café “quoted”", [], id="ordinary-unicode"),
        pytest.param("bell\x07", ["control"], id="c0-control"),
        pytest.param("mis\u0093decoded", ["control"], id="c1-control"),
        pytest.param("glyph \ue001", ["private_use"], id="private-use"),
        pytest.param("caf\ufffd au lait", ["replacement"], id="replacement"),
        pytest.param("user \u202ecod.exe", ["bidi"], id="bidi-override"),
        pytest.param("isolate \u2066x\u2069", ["bidi"], id="bidi-isolate"),
        pytest.param("pass\u200bword", ["zero_width"], id="zero-width-space"),
        pytest.param("Wo\u200drd", ["zero_width"], id="zwj-in-latin"),
        pytest.param("\u200bleading only", [], id="zero-width-not-inside-a-word"),
        pytest.param("\u0645\u06cc\u200c\u0631\u0648\u062f", [], id="persian-zwnj-is-spelling"),
        pytest.param("\U0001f468\u200d\U0001f469\u200d\U0001f467", [], id="emoji-zwj-sequence"),
        pytest.param("his fianc\u00c3\u00a9e", ["mojibake"], id="mojibake-latin1"),
        pytest.param("don\u00e2\u20ac\u2122t", ["mojibake"], id="mojibake-cp1252"),
        pytest.param("an alien\u00e2\u0080\u0094it", ["control", "mojibake"], id="mojibake-c1"),
        pytest.param("S\u00e3o Paulo, \u00c0 la carte, \u00a3 5", [], id="latin-1-letters-are-not-mojibake"),
        pytest.param("caf\u00c3", [], id="a-lone-lead-is-not-mojibake"),
    ],
)
def test_character_hygiene_warnings(text: str, kinds: list[str]) -> None:
    record = {"text": text}
    findings = hygiene(record, FORMATS["text"], screened_kinds(canonical(record)))
    by_message = {message: kind for kind, message in TEXT_CHECKS.items()}
    assert [by_message[f.message] for f in findings] == kinds
    assert all(f.warning and f.path == "/text" for f in findings)


def test_text_errors_make_the_named_kinds_errors() -> None:
    record = {"text": "caf\ufffd \u202e"}
    findings = hygiene(record, FORMATS["text"], screened_kinds(canonical(record)), frozenset({"bidi"}))
    assert sorted((f.message.split(" ")[0], f.warning) for f in findings) == [
        ("U+FFFD", True),
        ("bidirectional", False),
    ]


# Characters of every hygiene kind and every way JSON writes text: escapes, quotes, non-BMP, mojibake's pieces.
ALPHABET = [
    "a", "Z", " ", "\n", "\t", "\r", "\\", '"', "/", "\x00", "\x08", "\x0c", "\x1f", "\x7f", "\x85", "\u202b",
    "\u2067", "\u200b", "\u200d", "\u2060", "\ufeff", "\ufffd", "\ue000", "\uf8ff", "\u00c3", "\u00a9", "\u00e2",
    "\u20ac", "\u2122", "\u00c2", "\u0152", "é", "中", "\U0001f600", "\u2028", "plain words ",
]  # fmt: skip


def test_the_screen_never_misses_what_the_exact_checks_find() -> None:
    rng = random.Random(0)
    records = [{"text": "".join(rng.choice(ALPHABET) for _ in range(rng.randint(0, 24)))} for _ in range(3000)]
    every_kind = tuple(TEXT_CHECKS)
    for record in records:
        exact = {f.message for f in hygiene(record, FORMATS["text"], every_kind)}
        screened = {f.message for f in hygiene(record, FORMATS["text"], screened_kinds(canonical(record)))}
        assert screened == exact, record
    assert sum(bool(hygiene(r, FORMATS["text"], every_kind)) for r in records) > 1000  # every kind, often


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param("back\x08space", "control", id="escaped-as-b"),
        pytest.param("form\x0cfeed", "control", id="escaped-as-f"),
        pytest.param("start\x01of heading", "control", id="escaped-as-u00"),
        pytest.param("delete\x7f", "control", id="del-is-raw"),
        pytest.param("c1 \x85 control", "control", id="c1-control"),
        pytest.param("x\ue000y", "private_use", id="private-use-bottom"),
        pytest.param("x\uf8ffy", "private_use", id="private-use-top"),
        pytest.param("caf\ufffd", "replacement", id="replacement"),
        pytest.param("bom\ufeffinside", "zero_width", id="bom"),
        pytest.param("zero\u200bwidth", "zero_width", id="zero-width"),
        pytest.param("isolate \u2066x\u2069", "bidi", id="bidi"),
        pytest.param("his fianc\u00c3\u00a9e", "mojibake", id="mojibake"),
    ],
)
def test_the_screen_points_to_each_kind_in_canonical_json(text: str, kind: str) -> None:
    assert kind in screened_kinds(canonical({"text": f"plain “quoted” café \\b {text}"}))


def test_the_screen_passes_ordinary_text() -> None:
    for text in ("plain ASCII\nwith lines and \"quotes\"", "English with “smart” quotes, a dash — and an ellipsis…",
                 "Le café est très chaud, à côté de l'église", "中文文本和日本語のテキスト"):  # fmt: skip
        assert screened_kinds(canonical({"text": text})) == ()


def test_hygiene_findings_keep_their_lines_among_rejections(tmp_path: Path) -> None:
    texts = ["fine", "caf\ufffd", "bidi \u202e", "fine too", "", "caf\ufffd again", "fine", "\u202e again"]
    data = write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in texts])
    policy = data_policy("sft", drop_invalid=True, max_invalid_fraction=0.5, text_errors=frozenset({"bidi"}))
    result = validate_dataset(data, None, policy, tmp_path / "out")
    report = result.files[0]
    assert [d["line"] for d in report.dropped] == [3, 5, 8]  # bidi is an error here; line 5 is empty
    replacement = report.warnings[TEXT_CHECKS["replacement"]]
    assert [e["line"] for e in replacement["examples"]] == [2, 6]
    assert report.valid == 5
