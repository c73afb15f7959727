"""Length statistics of the accepted records: characters always, tokens when a tokenizer is at hand.

Token counting loads the model's tokenizer (which imports torch), so `validate` does it only when
TRAIN_MODEL_NAME_OR_PATH is set. Records over `max_length` are counted, with the fraction that TRL
would truncate (SFT) or drop/truncate (DPO).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import orjson

BATCH = 256


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


def _render(record: dict[str, Any], tokenizer: Any) -> list[str]:
    """The texts whose token count bounds the record's training length (the longer side of a pair)."""

    def text(value: Any, generation_prompt: bool = False) -> str:
        if isinstance(value, list):
            return tokenizer.apply_chat_template(value, tokenize=False, add_generation_prompt=generation_prompt)
        return value

    if "messages" in record:
        return [text(record["messages"])]
    if "text" in record:
        return [record["text"]]
    if "completion" in record:
        return [text(record["prompt"], True) + text(record["completion"])]
    prompt = text(record["prompt"], True) if "prompt" in record else ""
    return [prompt + text(record["chosen"]), prompt + text(record["rejected"])]


def _batches(path: Path) -> Iterator[list[dict[str, Any]]]:
    batch: list[dict[str, Any]] = []
    with open(path, "rb") as handle:
        for line in handle:
            batch.append(orjson.loads(line))
            if len(batch) == BATCH:
                yield batch
                batch = []
    if batch:
        yield batch


def token_lengths(prepared: Path, model_path: str, max_length: int | None) -> dict[str, Any] | None:
    """Token statistics of a prepared file, and how many records exceed `max_length`."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_path)
    lengths = array("I")
    for batch in _batches(prepared):
        for record in batch:
            encoded = tokenizer(_render(record, tokenizer), add_special_tokens=False)["input_ids"]
            lengths.append(max(len(ids) for ids in encoded))
    stats = percentiles(lengths, "tokens")
    if stats is not None and max_length:
        over = sum(1 for n in lengths if n > max_length)
        stats.update(max_length=max_length, over_max_length=over, truncated_fraction=over / len(lengths))
    return stats
