"""Compiled passes over a record's JSON (jobs/data/_scan.c), and their Python stand-ins.

`plain` checks a whole .jsonl line of a plain format (text fields and flags) without building the record:
JSON, schema, semantic checks and hygiene screen as the full path would decide them, with the line's
digest, prompt key, side and text length; or None, and the line takes the full path.

`scan` runs compiled (jobs/data/_scan.c, built by `make` through scripts/build-ext.sh). It reads either a
.jsonl line as the user wrote it or the job's canonical JSON of a record, once, and gives:
  - the hygiene kinds (hygiene.KIND_BITS) the record's strings may hold, from their code points, raw or
    escaped; the exact checks then run only on the texts of a record that may hold one;
  - how many keys its top-level object has (a line repeating a key parses to fewer);
  - a 64-bit digest of its content (strings' code points, the structure outside them), equal for the
    same record however it is spaced or escaped: the key of exact duplicates and leakage.
Without the compiled module (no C compiler where the environment was built) validation finds the same,
about three times as slowly: a regular expression screens the canonical JSON for any kind's bytes, the
digest is xxh3 of the canonical JSON, and every line is re-serialised.
"""

from __future__ import annotations

import re

import xxhash

from jobs.data.formats import Format, checked_from_line
from jobs.data.hygiene import KIND_BITS

try:
    from jobs.data import _scan
except ImportError:
    _scan = None

COMPILED = _scan is not None
EVERY_KIND = sum(KIND_BITS.values())
NOT_COUNTED = -1  # the key count where nothing counted them

_LOWER = bytes.maketrans(b"ABCDEFGHIJKLMNOPQRSTUVWXYZ", b"abcdefghijklmnopqrstuvwxyz")
_WHITESPACE = b" \t\n\r"


# In canonical JSON (orjson's: controls escaped as \u00XX, \b or \f, every other character raw UTF-8), the
# bytes that start a character of some kind: a control escape, DEL or a C1 control, private use, U+FFFD,
# bidi controls, zero-width characters, a mojibake lead (U+00C2-U+00F4). An escaped backslash before a b or
# an f also matches: the screen may point at a kind a record does not hold, never the reverse.
_SUSPECT = re.compile(
    rb"\\(?:u00|[bf])|\x7f|\xc2[\x80-\x9f]|\xee|\xef[\x80-\xa3\xbb\xbf]|\xe2\x80[\x8b-\x8d\xaa-\xae]"
    rb"|\xe2\x81[\xa0\xa6-\xa9]|\xc3[\x82-\xb4]"
)


def scan_python(data: bytes) -> tuple[int, int, int]:
    """What `scan` gives without the compiled module, for canonical JSON only (it does not see through
    spacing or escapes): every kind where a byte sequence of one is found, no key count, xxh3 of the bytes."""
    return (EVERY_KIND if _SUSPECT.search(data) else 0), NOT_COUNTED, xxhash.xxh3_64_intdigest(data)


def fold_python(text: str) -> bytes:
    """The text as UTF-8 with ASCII letters lower-cased and ASCII whitespace removed."""
    return text.encode("utf-8", "surrogatepass").translate(_LOWER, _WHITESPACE)


def fold(text: str) -> bytes:
    """`fold_python`, compiled where built (a lone surrogate, from a JSON \\ud800 escape, takes Python's)."""
    try:
        return _fold(text)
    except UnicodeEncodeError:
        return fold_python(text)


def plain_args(fmt: Format) -> tuple[tuple[str, ...], bytes, int, int, int] | None:
    """What `plain` needs to check a line of this format by itself; None where it cannot (not compiled, or
    a format whose schema says more than the line check knows)."""
    if _scan is None or not checked_from_line(fmt):
        return None

    def index(name: str) -> int:
        return fmt.fields.index(name) if name in fmt.fields else -1

    kinds = bytes(ord("t") if name in fmt.texts else ord("b") for name in fmt.fields)
    return fmt.fields, kinds, index("prompt"), index("chosen"), index("rejected")


def plain_python(*_: object) -> None:
    return None


scan = _scan.scan if _scan is not None else scan_python
# (digest, prompt key or None, text length, held out by the split) of a plain-format line, or None.
plain = _scan.plain if _scan is not None else plain_python
_fold = _scan.fold if _scan is not None else fold_python
# split.prompt_key in one compiled call (it raises UnicodeEncodeError for a lone surrogate, as fold does).
compiled_prompt_key = _scan.prompt_key if _scan is not None else None
