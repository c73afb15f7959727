"""Length statistics of the accepted records: characters always, tokens from a sample when a tokenizer is at hand.

Token counts come from an evenly spaced sample of the prepared training records (`SAMPLE`), rendered by
the model's template as TRL renders them (jobs/data/chat.py): tokenising the whole corpus here would
repeat what TRL does once the model loads. The report states the sample's size. Records over
`max_length` are counted in the sample, with the fraction that TRL would truncate (SFT) or drop/truncate (DPO).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    from jobs.data.chat import ChatRenderer

SAMPLE = 2000


def percentiles(values: Iterable[int], unit: str) -> dict[str, Any] | None:
    ordered = sorted(values)
    if not ordered:
        return None
    pick = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))]  # noqa: E731
    return {
        "unit": unit,
        "count": len(ordered),
        "mean": round(sum(ordered) / len(ordered), 1),
        "p50": pick(0.5),
        "p95": pick(0.95),
        "max": ordered[-1],
    }


def token_lengths(
    prepared: Path, records: int, renderer: ChatRenderer, max_length: int | None
) -> dict[str, Any] | None:
    """Token statistics of a sample of a prepared file's `records`, and how many exceed `max_length`."""
    step = max(1, -(-records // SAMPLE))
    lengths = array("I")
    with open(prepared, "rb") as handle:
        for index, line in enumerate(handle):
            if index % step == 0:
                lengths.append(renderer.token_count(orjson.loads(line)))
    stats = percentiles(lengths, "tokens")
    if stats is None:
        return None
    stats["sample"] = {"records": len(lengths), "of": records, "every": step}
    if max_length:
        over = sum(1 for n in lengths if n > max_length)
        stats.update(max_length=max_length, over_max_length=over, truncated_fraction=over / len(lengths))
    return stats
