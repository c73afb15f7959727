"""Character hygiene: characters a reader of the text does not see but the model does.

Each kind is a warning, counted and located like the other findings; TRAIN_TEXT_ERRORS names the kinds
that are errors instead. Scanning every text with regular expressions costs more than parsing it, so a
batch of records is first screened at the byte level (`screen`), in numpy over the records' canonical
JSON, for the byte sequences each kind is made of; only the kinds a record's bytes point to are then
checked exactly on its texts. The screen may point at a kind the text does not hold, never the reverse.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from jobs.data.formats import Format
from jobs.data.semantics import Finding, texts

if TYPE_CHECKING:  # numpy is imported where the screen runs: config reads TEXT_CHECKS for --help
    import numpy as np
    import numpy.typing as npt

    Bytes = npt.NDArray[np.uint8]

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
KIND_BITS = {kind: 1 << i for i, kind in enumerate(TEXT_CHECKS)}
CONTROL, PRIVATE_USE, REPLACEMENT, BIDI, ZERO_WIDTH, MOJIBAKE = KIND_BITS.values()

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
_PAD = b"\0\0\0\0"  # lookahead past the last record's bytes


def screen(records: Sequence[bytes]) -> list[int]:
    """For each record's canonical JSON (orjson: C0 controls escaped as \\u00XX, \\b, \\f ..., every other
    character raw UTF-8), a bit mask of the kinds (KIND_BITS) its bytes may hold; 0 means none."""
    import numpy as np

    data = np.frombuffer(b"".join([*records, _PAD]), dtype=np.uint8)
    ends = np.cumsum(np.fromiter(map(len, records), dtype=np.int64, count=len(records)))
    masks = np.zeros(len(records), dtype=np.uint8)

    def mark(positions: npt.NDArray[np.intp], bit: int) -> None:
        if positions.size:
            masks[np.searchsorted(ends, positions, side="right")] |= bit  # one bit: repeated indices are fine

    escapes = _escapes(np.flatnonzero(data == 0x5C))
    following = data[escapes + 1]  # \\u00XX, \\b or \\f: an escaped control character
    mark(escapes[(following == 0x75) | (following == 0x62) | (following == 0x66)], CONTROL)
    high = np.flatnonzero(data >= 0x7F)  # DEL and every byte of a multi-byte character
    if high.size:
        first, second, third = data[high], data[high + 1], data[high + 2]
        for bit, hits in _sequences(first, second, third).items():
            mark(high[hits], bit)
        leads = high[(first == 0xC3) & (second >= 0x82) & (second <= 0xB4)]  # U+00C2-U+00F4, Â to ô
        mark(leads[_read_as_cp1252(data[leads + 2], data[leads + 3])], MOJIBAKE)
    return masks.tolist()


def _escapes(backslashes: npt.NDArray[np.intp]) -> npt.NDArray[np.intp]:
    """The backslashes that start an escape: in a run of them, the first, third ... (`\\\\b` is a backslash
    and a b, not a backspace)."""
    import numpy as np

    if not backslashes.size:
        return backslashes
    starts = np.flatnonzero(np.diff(backslashes, prepend=-2) != 1)  # where each run begins
    lengths = np.diff(starts, append=backslashes.size)
    within = np.arange(backslashes.size) - np.repeat(starts, lengths)
    return backslashes[within % 2 == 0]


def _sequences(first: Bytes, second: Bytes, third: Bytes) -> dict[int, Any]:
    """Where each kind's characters start, as UTF-8: one boolean array per kind over the high bytes."""
    e2, ef = first == 0xE2, first == 0xEF
    general, arrows = e2 & (second == 0x80), e2 & (second == 0x81)  # U+2000-U+203F, U+2040-U+207F
    return {
        CONTROL: (first == 0x7F) | ((first == 0xC2) & (second <= 0x9F)),  # DEL, C1 controls U+0080-U+009F
        PRIVATE_USE: (first == 0xEE) | (ef & (second <= 0xA3)),  # U+E000-U+F8FF
        REPLACEMENT: ef & (second == 0xBF) & (third == 0xBD),  # U+FFFD
        BIDI: (general & (third >= 0xAA) & (third <= 0xAE)) | (arrows & (third >= 0xA6) & (third <= 0xA9)),
        # U+200B-U+200D, U+2060, U+FEFF
        ZERO_WIDTH: (general & (third >= 0x8B) & (third <= 0x8D)) | (arrows & (third == 0xA0))
        | (ef & (second == 0xBB) & (third == 0xBF)),
    }  # fmt: skip


def _read_as_cp1252(first: Bytes, second: Bytes) -> Any:
    """Whether a character follows that a UTF-8 continuation byte becomes when read as Latin-1 (U+0080-U+00BF)
    or cp1252 (U+0152-U+017E, U+0192, U+02C6, U+02DC, U+2013-U+2122)."""
    return (
        ((first == 0xC2) & (second >= 0x80))
        | ((first == 0xE2) & (second <= 0x84))
        | ((first == 0xC5) & (second >= 0x92) & (second <= 0xBE))
        | ((first == 0xC6) & (second == 0x92))
        | ((first == 0xCB) & ((second == 0x86) | (second == 0x9C)))
    )


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


def hygiene(record: dict[str, Any], fmt: Format, screened: int, errors: frozenset[str] = frozenset()) -> list[Finding]:
    """Character hygiene findings of the kinds `screen` pointed to, with the path of each text that has them:
    warnings, or errors for the kinds in `errors` (TRAIN_TEXT_ERRORS)."""
    if not screened:
        return []
    kinds = [kind for kind, bit in KIND_BITS.items() if screened & bit]
    return [
        Finding(path, TEXT_CHECKS[kind], warning=kind not in errors)
        for path, text in texts(record, fmt)
        for kind in kinds
        if _EXACT[kind](text)
    ]
