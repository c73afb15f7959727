"""The fixed prompts the samples are generated for (jobs/train/guards/samples.py), as token ids read from the
rows the trainer holds, already tokenised by TRL: what the model was trained to continue, token for token,
with no second rendering of the chat template.

Where a row's prompt ends, by dataset shape (TRL 1.16's tokenised columns):
- DPO and KTO rows: `prompt_ids` (for conversational data, rendered with the generation prompt);
- SFT prompt-completion rows: `input_ids` up to the first token of `completion_mask`;
- SFT conversational rows: `input_ids` up to the first trained token of the last trained run, the last
  assistant turn's answer (`assistant_masks`, or the `labels` SFTTrainer builds from them and then drops
  the masks for; the turn's header is not trained, so it stays in the prompt);
- plain language-modelling text (every token trained): its leading half, at most PLAIN_TEXT_TOKENS tokens.
A packed row's first record stands for the row. Prompts longer than MAX_PROMPT_TOKENS keep their end, where
generation continues.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

PLAIN_TEXT_TOKENS = 128
MAX_PROMPT_TOKENS = 1024
# Rows read at most while looking for distinct prompts: KTO repeats each prompt, a file may repeat many.
ROWS_PER_PROMPT = 50
IGNORED_LABEL = -100  # transformers' ignore index: a token the loss does not train


def prompt_ids(row: Mapping[str, Any]) -> list[int] | None:
    """The prompt of one tokenised row, or None where the row has no tokens to go on."""
    if row.get("prompt_ids"):
        return _kept(list(row["prompt_ids"]))
    ids = list(row.get("input_ids") or [])
    if not ids:
        return None
    first = _first_record_length(row, len(ids))
    ids = ids[:first]
    start = _answer_start(row, first)
    if start is None:  # nothing marks an answer: language modelling on plain text
        start = max(1, min(PLAIN_TEXT_TOKENS, len(ids) // 2))
    return _kept(ids[:start])


def _first_record_length(row: Mapping[str, Any], length: int) -> int:
    lengths = row.get("seq_lengths")  # a packed row: records end to end
    return int(lengths[0]) if lengths else length


def _answer_start(row: Mapping[str, Any], length: int) -> int | None:
    """Where the answer begins: the completion's first token, else the start of the last trained run."""
    completion = row.get("completion_mask")
    if completion is not None and 1 in completion[:length]:
        return max(1, list(completion[:length]).index(1))
    trained = _trained(row, length)
    if trained is None or all(trained):
        return None
    return _last_run_start(trained)


def _trained(row: Mapping[str, Any], length: int) -> list[bool] | None:
    if row.get("assistant_masks") is not None:
        return [bool(bit) for bit in row["assistant_masks"][:length]]
    if row.get("labels") is not None:
        return [label != IGNORED_LABEL for label in row["labels"][:length]]
    return None


def _last_run_start(trained: Sequence[bool]) -> int | None:
    end = max((i for i, bit in enumerate(trained) if bit), default=None)
    if end is None:  # nothing trained in the record: no answer to find
        return None
    start = end
    while start > 0 and trained[start - 1]:
        start -= 1
    return max(1, start)


def _kept(ids: list[int]) -> list[int]:
    return ids[-MAX_PROMPT_TOKENS:]


def fixed_prompts(dataset: Any, count: int) -> list[list[int]]:
    """The first `count` distinct prompts of `dataset` in its order: the same ones at every call, on every
    rank, so that the samples of one run compare across steps."""
    found: list[list[int]] = []
    seen: set[tuple[int, ...]] = set()
    for index in range(min(len(dataset), count * ROWS_PER_PROMPT)):
        ids = prompt_ids(dataset[index])
        if ids is None or tuple(ids) in seen:
            continue
        seen.add(tuple(ids))
        found.append(ids)
        if len(found) == count:
            break
    return found
