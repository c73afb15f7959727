"""Character hygiene: the screen of each record's JSON (jobs/data/scan.py), and the exact checks it points to."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from jobs.data.formats import FORMATS
from jobs.data.hygiene import KIND_BITS, TEXT_CHECKS, hygiene
from jobs.data.scan import scan
from jobs.data.validate import validate_dataset
from jobs.preflight import data_policy
from tests.helpers import write_jsonl


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
    findings = hygiene(record, FORMATS["text"], scan(orjson.dumps(record))[0])
    by_message = {message: kind for kind, message in TEXT_CHECKS.items()}
    assert [by_message[f.message] for f in findings] == kinds
    assert all(f.warning and f.path == "/text" for f in findings)


def test_text_errors_make_the_named_kinds_errors() -> None:
    record = {"text": "caf\ufffd \u202e"}
    findings = hygiene(record, FORMATS["text"], scan(orjson.dumps(record))[0], frozenset({"bidi"}))
    assert sorted((f.message.split(" ")[0], f.warning) for f in findings) == [
        ("U+FFFD", True),
        ("bidirectional", False),
    ]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        pytest.param("back\x08space", "control", id="escaped-as-b"),
        pytest.param("form\x0cfeed", "control", id="escaped-as-f"),
        pytest.param("start\x01of heading", "control", id="escaped-as-u00"),
        pytest.param("delete\x7f", "control", id="del-is-raw"),
        pytest.param("bom\ufeffinside", "zero_width", id="bom"),
        pytest.param("x\uf8ffy", "private_use", id="private-use-top"),
    ],
)
def test_the_screen_finds_each_kind_however_it_is_written(text: str, kind: str) -> None:
    record = {"text": f"clean “quoted” café \\b {text}"}
    for written in (orjson.dumps(record), json.dumps(record).encode(), json.dumps(record, ensure_ascii=False).encode()):
        assert scan(written)[0] == KIND_BITS[kind], written
    assert scan(orjson.dumps({"text": "clean “quoted” café \\b"}))[0] == 0  # an escaped backslash before a b


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
