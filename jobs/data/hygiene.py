"""Character hygiene: characters a reader of the text does not see but the model does.

Each kind is a warning, counted and located like the other findings; TRAIN_TEXT_ERRORS names the kinds
that are errors instead. Scanning every text with every kind's expression costs more than parsing it, so
a record's canonical JSON is first screened for the bytes each kind's characters start with
(`screened_kinds`: a few microseconds a record), and only the kinds it points to are checked exactly, on
the record's texts. The screen may point at a kind a text does not hold, never the reverse
(tests/jobs/data/test_hygiene.py).
"""

from __future__ import annotations

import re
from typing import Any

from jobs.data.formats import Format
from jobs.data.semantics import Finding, texts

# The kinds, with the warning each gives.
TEXT_CHECKS = {
    "control": "control characters (often mis-decoded text)",
    "private_use": "private-use characters (meaningless outside one font)",
    "replacement": "U+FFFD replacement characters: the text was decoded with the wrong codec upstream and the "
    "original characters are lost",
    "bidi": "bidirectional control characters (U+202A-U+202E, U+2066-U+2069): the text displays differently "
    "from what the model reads",
    "zero_width": "zero-width characters inside words: invisible, they split words into odd tokens",
    "mojibake": "mojibake: UTF-8 text decoded as Latin-1/cp1252 (such as 'Ã©' for 'é', 'â€™' for '’')",
}

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_PRIVATE_USE = re.compile(r"[\ue000-\uf8ff]")
_BIDI = re.compile(r"[\u202a-\u202e\u2066-\u2069]")
# Invisible characters splitting a word. ZWNJ and ZWJ shape Persian, Indic and emoji text, so they count
# only between Latin letters, where they have no use.
_ZERO_WIDTH = re.compile(r"(?<=\w)[\u200b\u2060\ufeff](?=\w)|(?<=[A-Za-z])[\u200c\u200d](?=[A-Za-z])")
# A UTF-8 lead byte read as Latin-1/cp1252 (Ã, â, ð ...) followed by continuation bytes read the same way.
_CP1252_HIGH = (  # the characters cp1252 puts at bytes 0x80-0x9f
    "\u0152\u0153\u0160\u0161\u0178\u017d\u017e\u0192\u02c6\u02dc\u2013\u2014\u2018-\u201a\u201c-\u201e"
    "\u2020-\u2022\u2026\u2030\u2039\u203a\u20ac\u2122"
)
_MOJIBAKE = re.compile(f"[\u00c2-\u00f4][\u0080-\u00bf{_CP1252_HIGH}]+")
# What each kind's characters start with in canonical JSON (orjson's: controls escaped as \u00XX, \b or \f,
# every other character raw UTF-8). Each expression begins with one literal byte, which the regex engine
# finds fast; a longer alternation would try every branch at every byte. (An escaped backslash before a b or
# an f matches as well, and U+00C2-U+00F4 are mojibake only before a continuation's lead byte.)
_SCREENS: tuple[tuple[re.Pattern[bytes], tuple[str, ...]], ...] = (
    (re.compile(rb"\\(?:u00|[bf])"), ("control",)),  # C0 controls, escaped
    (re.compile(rb"\x7f"), ("control",)),  # DEL, raw
    (re.compile(rb"\xc2[\x80-\x9f]"), ("control",)),  # C1 controls
    (re.compile(rb"\xee"), ("private_use",)),  # U+E000-U+EFFF
    (re.compile(rb"\xef(?:[\x80-\xa3]|\xbf\xbd|\xbb\xbf)"), ("private_use", "replacement", "zero_width")),
    (re.compile(rb"\xe2(?:\x80[\x8b-\x8d\xaa-\xae]|\x81[\xa0\xa6-\xa9])"), ("bidi", "zero_width")),
    (re.compile(rb"\xc3[\x82-\xb4][\xc2\xc5\xc6\xcb\xe2]"), ("mojibake",)),
)
_ASCII_SCREENS = 2  # the first two: an ASCII record's JSON can hold nothing else


def _is_mojibake(text: str) -> bool:
    """A run that encodes back (cp1252 or Latin-1) to one whole UTF-8 character other than itself."""
    for match in _MOJIBAKE.finditer(text):
        run = match.group()
        size = 2 if run[0] < "\u00e0" else 3 if run[0] < "\u00f0" else 4  # from the UTF-8 lead byte
        for codec in ("cp1252", "latin-1"):
            try:
                if len(run) >= size and run[:size].encode(codec).decode("utf-8"):
                    return True
            except (UnicodeEncodeError, UnicodeDecodeError):
                continue
    return False


_EXACT = {
    "control": _CONTROL.search,
    "private_use": _PRIVATE_USE.search,
    "replacement": lambda text: "\ufffd" in text,
    "bidi": _BIDI.search,
    "zero_width": _ZERO_WIDTH.search,
    "mojibake": _is_mojibake,
}


def screened_kinds(canonical_json: bytes) -> tuple[str, ...]:
    """The kinds a record may hold, from its canonical JSON, in TEXT_CHECKS's order."""
    screens = _SCREENS[:_ASCII_SCREENS] if canonical_json.isascii() else _SCREENS
    found = {kind for pattern, kinds in screens if pattern.search(canonical_json) for kind in kinds}
    return tuple(kind for kind in TEXT_CHECKS if kind in found)


def hygiene(
    record: dict[str, Any], fmt: Format, kinds: tuple[str, ...], errors: frozenset[str] = frozenset()
) -> list[Finding]:
    """Findings of the given kinds (those `screened_kinds` points to), with the path of each text that has
    them: warnings, or errors for the kinds in `errors` (TRAIN_TEXT_ERRORS)."""
    if not kinds:
        return []
    return [
        Finding(path, TEXT_CHECKS[kind], warning=kind not in errors)
        for path, text in texts(record, fmt)
        for kind in kinds
        if _EXACT[kind](text)
    ]
