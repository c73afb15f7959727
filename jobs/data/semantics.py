"""Checks beyond the schema, on a record already known to match its format's schema.

Errors make a record invalid: empty or whitespace-only text, chosen equal to rejected, implicit-prompt
pairs whose histories differ before the last turn, conversations with no assistant turn or with roles
out of order (system not first, not starting with a user turn, a tool turn without a tool call, a reply
not starting with assistant). Warnings are reported and kept: consecutive turns of one role, message keys
outside the schema, tool calls to functions not offered. Character hygiene: jobs/data/hygiene.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from jobs.data.formats import MESSAGE_KEYS, Format, is_tool_list


@dataclass(frozen=True, slots=True)
class Finding:
    path: str
    message: str
    warning: bool = False


def message_text(content: Any) -> str:
    """The text of a message's content: a string, or the text parts of a list."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(p.get("text") or "" for p in content if isinstance(p, dict))
    return ""


_INSTRUCTIONS = ("system", "developer")  # Harmony's developer turn stands where a system turn would


def _order_problem(previous: str | None, role: str, part: str) -> str | None:
    """Why `role` may not follow `previous` in this part of a conversation ("full", "prompt", "reply")."""
    if role in _INSTRUCTIONS:
        return None if previous in (None, *_INSTRUCTIONS) and part != "reply" else f"a {role} turn can only come first"
    if previous in (None, *_INSTRUCTIONS):
        first = "assistant" if part == "reply" else "user"
        return None if role == first else f"the first turn after the start or system must be {first}"
    if role == "tool" and previous not in ("assistant", "tool"):
        return "a tool turn must follow an assistant turn (its tool call)"
    return None


_UNKNOWN_KEY = "a message key outside the schema (not passed to training)"


def _message(message: dict[str, Any], path: str) -> list[Finding]:
    """Findings of one turn on its own: unknown keys (warnings) and empty text. A turn that makes tool
    calls may have no text."""
    findings = [Finding(f"{path}/{key}", _UNKNOWN_KEY, warning=True) for key in message if key not in MESSAGE_KEYS]
    content = message.get("content")
    if content is not None and not message.get("tool_calls") and _blank(message_text(content)):
        findings.append(Finding(f"{path}/content", f"empty {message['role']} turn"))
    return findings


def _conversation(messages: list[dict[str, Any]], path: str, part: str) -> list[Finding]:
    findings: list[Finding] = []
    previous: str | None = None
    for index, message in enumerate(messages):
        role = message["role"]
        problem = _order_problem(previous, role, part)
        if problem:
            findings.append(Finding(f"{path}/{index}/role", f"roles out of order: '{role}' here; {problem}"))
            if role in _INSTRUCTIONS:
                continue  # judge the next turn as if the stray system turn were not there
        elif role == previous and role in ("user", "assistant"):
            # Training handles it, but many chat templates refuse non-alternating roles.
            findings.append(Finding(f"{path}/{index}/role", f"consecutive {role} turns", warning=True))
        findings += _message(message, f"{path}/{index}")
        previous = role
    if part == "full" and "assistant" not in {m["role"] for m in messages}:
        findings.append(Finding(path, "no assistant turn: nothing to train on"))
    if part == "prompt" and previous not in ("user", "tool"):
        findings.append(Finding(f"{path}/{len(messages) - 1}", "the prompt must end with a user (or tool) turn"))
    return findings


def texts(record: dict[str, Any], fmt: Format) -> list[tuple[str, str]]:
    if not fmt.conversational:
        return [(f"/{name}", record[name]) for name in fmt.texts]
    return [
        (f"/{name}/{i}/content", message_text(m.get("content")))
        for name in fmt.fields
        for i, m in enumerate(record[name])
        if isinstance(record[name], list)
    ]


def _blank(text: str) -> bool:
    return not text or text.isspace()  # no stripped copy of a long text


def _core(text: str) -> str:
    """The text without surrounding whitespace, copied only when it has some."""
    return text.strip() if text[:1].isspace() or text[-1:].isspace() else text


def _plain(record: dict[str, Any], fmt: Format) -> list[Finding]:
    """Findings of a record of a plain (non-conversational) format: errors only."""
    blank = [name for name in fmt.texts if not (text := record[name]) or text.isspace()]
    if blank:
        return [Finding(f"/{name}", "empty or whitespace-only text") for name in blank]
    return _same_pair(record, fmt) if "rejected" in fmt.fields else []


def _part(name: str, fmt: Format) -> str:
    """Which part of a conversation a field holds: a whole one, a prompt, or a reply to the prompt."""
    if name == "prompt":
        return "prompt"
    if name == "messages" or "prompt" not in fmt.fields:
        return "full"  # implicit-prompt pairs: each side is a whole conversation
    return "reply"


def _conversations(record: dict[str, Any], fmt: Format) -> list[Finding]:
    findings: list[Finding] = []
    for name in fmt.fields:
        if isinstance(record[name], list):  # not the label of unpaired preference data
            findings += _conversation(record[name], f"/{name}", _part(name, fmt))
    return findings


def _same_pair(record: dict[str, Any], fmt: Format) -> list[Finding]:
    chosen, rejected = record["chosen"], record["rejected"]
    if fmt.conversational:
        if "prompt" not in fmt.fields:
            return []  # checked first, in check_record
        chosen, rejected = (
            [message_text(m.get("content")) for m in chosen],
            [message_text(m.get("content")) for m in rejected],
        )
        same = [_core(c) for c in chosen] == [_core(r) for r in rejected]
    else:
        same = chosen == rejected or _core(chosen) == _core(rejected)
    return [Finding("/rejected", "rejected is the same as chosen: the pair teaches nothing")] if same else []


def _implicit_pair(chosen: list[dict[str, Any]], rejected: list[dict[str, Any]]) -> list[Finding]:
    def turn(m: dict[str, Any]) -> tuple[str, str]:
        return m["role"], _core(message_text(m.get("content")))

    history, other = [turn(m) for m in chosen[:-1]], [turn(m) for m in rejected[:-1]]
    if history != other:
        index = next(
            (i for i, (a, b) in enumerate(zip(history, other, strict=False)) if a != b), min(len(history), len(other))
        )
        return [Finding(f"/rejected/{index}", "chosen and rejected histories differ before the last turn: "
                        "the shared prompt is ambiguous")]  # fmt: skip
    if chosen and rejected and turn(chosen[-1]) == turn(rejected[-1]):
        return [Finding("/rejected", "rejected is the same as chosen: the pair teaches nothing")]
    return []


def _tools(record: dict[str, Any], fmt: Format) -> list[Finding]:
    """The `tools` column: JSON text must hold a list of function schemas (a list is checked by the schema);
    a tool call naming no offered function is a warning."""
    tools = record.get("tools")
    if isinstance(tools, str):
        try:
            tools = orjson.loads(tools)
        except orjson.JSONDecodeError as error:
            return [Finding("/tools", f"tools is text but not JSON ({error})")]
        if not is_tool_list(tools):
            return [Finding("/tools", "tools must be a list of function schemas ({type: function, function: "
                            "{name, description, parameters}}), as a list or its JSON text")]  # fmt: skip
    offered = {tool["function"]["name"] for tool in tools or []}
    return [
        Finding(f"/{name}/{i}/tool_calls/{j}/function/name", "a tool call to a function not in tools", warning=True)
        for name in fmt.fields
        if isinstance(record[name], list) and tools is not None
        for i, message in enumerate(record[name])
        for j, call in enumerate(message.get("tool_calls") or [])
        if call["function"]["name"] not in offered
    ]


def check_record(record: dict[str, Any], fmt: Format) -> list[Finding]:
    """Semantic findings for a schema-valid record of format `fmt` (character hygiene: jobs/data/hygiene.py)."""
    if fmt.name == "conversational_implicit_preference":
        # Differing histories explain any other oddity of the pair (e.g. a turn marker lost in one side).
        pair = _implicit_pair(record["chosen"], record["rejected"])
        if pair:
            return pair
    if not fmt.conversational:
        return _plain(record, fmt)
    findings = _conversations(record, fmt) + _tools(record, fmt)
    if "rejected" in fmt.fields and not any(not f.warning for f in findings):
        findings += _same_pair(record, fmt)
    return findings
