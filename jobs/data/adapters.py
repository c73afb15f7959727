"""Adapters from the formats people already have to the native ones, one record at a time.

Each adapter recognises its records by their keys, and converts without judging: values are carried
over as they are, so a wrong type or an empty turn is reported by the schema or the semantic checks
on the converted record, at a path of the converted record.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

Record = dict[str, Any]
Message = dict[str, Any]

# ShareGPT speaker names (and LLaMA-Factory's tool turns) -> chat roles. Unknown names pass through,
# so the schema names them at their path.
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "system": "system",
    "function_call": "assistant",
    "observation": "tool",
    "tool": "tool",
}
_HH_TURN = re.compile(r"\n\n(Human|Assistant):[ ]?")
_HH_ROLES = {"Human": "user", "Assistant": "assistant"}


def _alpaca(record: Record) -> Record:
    messages: list[Message] = []
    if record.get("system"):
        messages.append({"role": "system", "content": record["system"]})
    for turn in record.get("history") or []:
        question, answer = turn
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    instruction, extra = record["instruction"], record.get("input")
    prompt = (
        f"{instruction}\n\n{extra}"
        if isinstance(instruction, str) and isinstance(extra, str) and extra
        else instruction
    )
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": record["output"]}]
    return {"messages": messages}


def _sharegpt_turn(turn: dict[str, Any]) -> Message:
    speaker = turn["from"]
    return {"role": SHAREGPT_ROLES.get(str(speaker).lower(), speaker), "content": turn["value"]}


def _sharegpt_prompt(record: Record) -> list[Message]:
    messages = [_sharegpt_turn(turn) for turn in record["conversations"]]
    if record.get("system"):
        messages.insert(0, {"role": "system", "content": record["system"]})
    return messages


def _sharegpt(record: Record) -> Record:
    return {"messages": _sharegpt_prompt(record)}


def _sharegpt_preference(record: Record) -> Record:
    return {
        "prompt": _sharegpt_prompt(record),
        "chosen": [_sharegpt_turn(record["chosen"])],
        "rejected": [_sharegpt_turn(record["rejected"])],
    }


def _openai_preference(record: Record) -> Record:
    return {
        "prompt": record["input"]["messages"],
        "chosen": record["preferred_output"],
        "rejected": record["non_preferred_output"],
    }


def parse_hh_transcript(transcript: str) -> list[Message]:
    """'\\n\\nHuman: hi\\n\\nAssistant: hello' -> user/assistant messages (text before the first turn is dropped)."""
    pieces = _HH_TURN.split(transcript)
    return [
        {"role": _HH_ROLES[speaker], "content": text.strip()}
        for speaker, text in zip(pieces[1::2], pieces[2::2], strict=True)
    ]


def _hh_rlhf(record: Record) -> Record:
    return {"chosen": parse_hh_transcript(record["chosen"]), "rejected": parse_hh_transcript(record["rejected"])}


def _is_hh_transcript(record: Record) -> bool:
    chosen = record.get("chosen")
    return isinstance(chosen, str) and "\n\nHuman:" in chosen and "\n\nAssistant:" in chosen


def _llamafactory_message(message: dict[str, Any]) -> Message:
    content = message["content"]
    if isinstance(content, list):  # LLaMA-Factory v1 parts: {"type": "text", "value": ...}
        parts = [{"type": part.get("type"), "text": part.get("value", part.get("text"))} for part in content]
        content = "".join(p["text"] for p in parts if isinstance(p["text"], str)) if _all_text(parts) else parts
    return {"role": message["role"], "content": content}


def _all_text(parts: list[dict[str, Any]]) -> bool:
    return all(p["type"] == "text" and isinstance(p["text"], str) for p in parts)


def _llamafactory_preference(record: Record) -> Record:
    return {
        "chosen": [_llamafactory_message(m) for m in record["chosen_messages"]],
        "rejected": [_llamafactory_message(m) for m in record["rejected_messages"]],
    }


def _any_record(record: Record) -> bool:
    return True


@dataclass(frozen=True)
class Adapter:
    name: str
    target: str  # the native format it produces
    keys: frozenset[str]
    convert: Callable[[Record], Record]
    description: str
    also: Callable[[Record], bool] = _any_record  # a module function, so adapters pickle (shard workers)

    def matches(self, record: Record) -> bool:
        return self.keys <= record.keys() and self.also(record)


# Most specific first: ShareGPT preference records also have `conversations`.
ADAPTERS: dict[str, Adapter] = {
    a.name: a
    for a in (
        Adapter("openai_preference", "conversational_preference",
                frozenset({"input", "preferred_output", "non_preferred_output"}), _openai_preference,
                "OpenAI preference fine-tuning: input.messages, preferred_output, non_preferred_output"),
        Adapter("llamafactory_preference", "conversational_implicit_preference",
                frozenset({"chosen_messages", "rejected_messages"}), _llamafactory_preference,
                "LLaMA-Factory v1 preference: chosen_messages / rejected_messages with content parts"),
        Adapter("sharegpt_preference", "conversational_preference", frozenset({"conversations", "chosen", "rejected"}),
                _sharegpt_preference, "ShareGPT preference: conversations plus chosen/rejected {from, value}"),
        Adapter("sharegpt", "messages", frozenset({"conversations"}), _sharegpt,
                "ShareGPT: conversations of {from, value}"),
        Adapter("alpaca", "messages", frozenset({"instruction", "output"}), _alpaca,
                "Alpaca: instruction / input / output, optional system and history"),
        Adapter("hh_rlhf", "conversational_implicit_preference", frozenset({"chosen", "rejected"}), _hh_rlhf,
                "Anthropic hh-rlhf: chosen/rejected transcripts of '\\n\\nHuman: ... \\n\\nAssistant: ...'",
                also=_is_hh_transcript),
    )
}  # fmt: skip


def detect_adapter(record: Record) -> Adapter | None:
    for adapter in ADAPTERS.values():
        if adapter.matches(record):
            return adapter
    return None
