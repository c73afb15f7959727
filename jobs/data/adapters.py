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


def _system(record: Record) -> list[Message]:
    return [{"role": "system", "content": record["system"]}] if record.get("system") else []


def _user(text: Any) -> list[Message]:
    return [{"role": "user", "content": text}]


def _assistant(text: Any) -> list[Message]:
    return [{"role": "assistant", "content": text}]


def _alpaca_prompt(record: Record, question: str = "instruction") -> list[Message]:
    """System, the history's [question, answer] pairs as turns, then the question (and input) as a user turn."""
    messages = _system(record)
    for turn in record.get("history") or []:
        asked, answered = turn
        messages += [*_user(asked), *_assistant(answered)]
    instruction, extra = record[question], record.get("input")
    prompt = (
        f"{instruction}\n\n{extra}"
        if isinstance(instruction, str) and isinstance(extra, str) and extra
        else instruction
    )
    return [*messages, *_user(prompt)]


def _alpaca(record: Record) -> Record:
    return {"messages": [*_alpaca_prompt(record), *_assistant(record["output"])]}


def _alpaca_preference(record: Record) -> Record:
    """LLaMA-Factory's alpaca ranking data: chosen/rejected answers, or the older ranked `output` list, whose
    first answer is chosen over its second (as LLaMA-Factory trains it)."""
    if "output" in record:
        chosen, rejected = _ranked_answers(record)[:2]
    else:
        chosen, rejected = record["chosen"], record["rejected"]
    return {"prompt": _alpaca_prompt(record), "chosen": _assistant(chosen), "rejected": _assistant(rejected)}


def _ranked_answers(record: Record) -> list[Any]:
    answers = record["output"]
    if not isinstance(answers, list) or len(answers) < 2:
        size = f"{len(answers)} answer(s)" if isinstance(answers, list) else f"a {type(answers).__name__}"
        raise ValueError(f"`output` holds {size}; a ranked list needs at least 2 answers, best first")
    return answers


def _alpaca_ranked_pairs(record: Record) -> list[Record]:
    """Every pair of a ranked `output` list, each answer chosen over every later one: k(k-1)/2 pairs."""
    answers, prompt = _ranked_answers(record), _alpaca_prompt(record)
    return [
        {"prompt": prompt, "chosen": _assistant(better), "rejected": _assistant(worse)}
        for i, better in enumerate(answers)
        for worse in answers[i + 1 :]
    ]


def _alpaca_kto(record: Record) -> Record:
    return {"prompt": _alpaca_prompt(record), "completion": _assistant(record["output"]), "label": record["kto_tag"]}


def _is_ranked_output(record: Record) -> bool:
    return isinstance(record.get("output"), list)


@dataclass(frozen=True)
class _SingleTurnPreference:
    """A system and one question with a chosen and a rejected answer (a callable object, not a closure:
    adapters pickle, for shard workers)."""

    question: str
    chosen: str
    rejected: str

    def __call__(self, record: Record) -> Record:
        prompt = [*_system(record), *_user(record[self.question])]
        return {
            "prompt": prompt,
            "chosen": _assistant(record[self.chosen]),
            "rejected": _assistant(record[self.rejected]),
        }


@dataclass(frozen=True)
class _SingleTurnUnpaired:
    """A system and one question with a completion and its label."""

    question: str

    def __call__(self, record: Record) -> Record:
        prompt = [*_system(record), *_user(record[self.question])]
        return {"prompt": prompt, "completion": _assistant(record["completion"]), "label": record["label"]}


def _axolotl_ultra(record: Record) -> Record:
    """Axolotl's ultra: a prompt string and chosen/rejected [user, assistant...] lists; the lists are the
    pairs (nothing dropped), and the prompt must be their first user turn."""
    chosen, rejected = record["chosen"], record["rejected"]
    if chosen[0].get("content") != record["prompt"]:
        raise ValueError("the prompt differs from the first turn of chosen")
    return {"chosen": [*_system(record), *chosen], "rejected": [*_system(record), *rejected]}


@dataclass(frozen=True)
class _TextFields:
    """A module-level callable (adapters pickle, for shard workers): the named fields hold strings."""

    names: tuple[str, ...]

    def __call__(self, record: Record) -> bool:
        return all(isinstance(record.get(name), str) for name in self.names)


def _is_ultra(record: Record) -> bool:
    chosen, rejected = record.get("chosen"), record.get("rejected")
    return (
        isinstance(record.get("prompt"), str)
        and isinstance(chosen, list)
        and isinstance(rejected, list)
        and bool(chosen)
        and isinstance(chosen[0], dict)
    )


def _chat_template_preference(record: Record) -> Record:
    """Axolotl's chat_template.default DPO: messages, then chosen/rejected as one message, a string or a list."""

    def reply(value: Any) -> list[Message]:
        if isinstance(value, str):
            return _assistant(value)
        return [value[-1]] if isinstance(value, list) else [value]

    return {"prompt": record["messages"], "chosen": reply(record["chosen"]), "rejected": reply(record["rejected"])}


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


def _sharegpt_kto(record: Record) -> Record:
    messages = _sharegpt_prompt(record)
    return {"prompt": messages[:-1], "completion": messages[-1:], "label": record["kto_tag"]}


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
    # For ranked lists of answers: every pair of a record (TRAIN_RANKED_PAIRS=all); `convert` gives the first.
    pairs: Callable[[Record], list[Record]] | None = None

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
        Adapter("sharegpt_kto", "conversational_unpaired_preference", frozenset({"conversations", "kto_tag"}),
                _sharegpt_kto, "LLaMA-Factory ShareGPT KTO: conversations and a kto_tag for the last turn"),
        Adapter("sharegpt", "messages", frozenset({"conversations"}), _sharegpt,
                "ShareGPT: conversations of {from, value}"),
        Adapter("alpaca_preference", "conversational_preference", frozenset({"instruction", "chosen", "rejected"}),
                _alpaca_preference, "LLaMA-Factory alpaca ranking: instruction / input / chosen / rejected, "
                "optional system and history"),
        Adapter("alpaca_ranking", "conversational_preference", frozenset({"instruction", "output"}),
                _alpaca_preference, "LLaMA-Factory alpaca ranking (older): output: [best, second, ...]",
                also=_is_ranked_output, pairs=_alpaca_ranked_pairs),
        Adapter("alpaca_kto", "conversational_unpaired_preference", frozenset({"instruction", "output", "kto_tag"}),
                _alpaca_kto, "LLaMA-Factory alpaca KTO: instruction / input / output and a kto_tag"),
        Adapter("alpaca", "messages", frozenset({"instruction", "output"}), _alpaca,
                "Alpaca: instruction / input / output, optional system and history"),
        Adapter("axolotl_intel", "conversational_preference", frozenset({"question", "chosen", "rejected"}),
                _SingleTurnPreference("question", "chosen", "rejected"),
                "Axolotl DPO intel: system / question / chosen / rejected", also=_TextFields(("question", "chosen"))),
        Adapter("axolotl_argilla", "conversational_preference",
                frozenset({"instruction", "chosen_response", "rejected_response"}),
                _SingleTurnPreference("instruction", "chosen_response", "rejected_response"),
                "Axolotl DPO argilla: system / instruction / chosen_response / rejected_response"),
        Adapter("axolotl_icr", "conversational_preference", frozenset({"input", "chosen", "rejected"}),
                _SingleTurnPreference("input", "chosen", "rejected"),
                "Axolotl DPO icr: system / input / chosen / rejected", also=_TextFields(("input", "chosen"))),
        Adapter("axolotl_prompt_pairs", "conversational_preference",
                frozenset({"system", "prompt", "chosen", "rejected"}),
                _SingleTurnPreference("prompt", "chosen", "rejected"),
                "Axolotl DPO prompt_pairs: a system prompt beside prompt / chosen / rejected",
                also=_TextFields(("system", "prompt", "chosen"))),
        Adapter("axolotl_ultra", "conversational_implicit_preference", frozenset({"prompt", "chosen", "rejected"}),
                _axolotl_ultra, "Axolotl DPO ultra: a prompt string with chosen/rejected message lists",
                also=_is_ultra),
        Adapter("axolotl_chat_template", "conversational_preference", frozenset({"messages", "chosen", "rejected"}),
                _chat_template_preference, "Axolotl DPO chat_template: messages, then a chosen and a rejected reply"),
        Adapter("axolotl_kto_intel", "conversational_unpaired_preference",
                frozenset({"question", "completion", "label"}),
                _SingleTurnUnpaired("question"), "Axolotl KTO intel: system / question / completion / label"),
        Adapter("axolotl_kto_argilla", "conversational_unpaired_preference",
                frozenset({"instruction", "completion", "label"}), _SingleTurnUnpaired("instruction"),
                "Axolotl KTO argilla: system / instruction / completion / label"),
        Adapter("axolotl_kto_prompt_pairs", "conversational_unpaired_preference",
                frozenset({"system", "prompt", "completion", "label"}), _SingleTurnUnpaired("prompt"),
                "Axolotl KTO prompt_pairs: a system prompt beside prompt / completion / label",
                also=_TextFields(("system", "prompt", "completion"))),
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
