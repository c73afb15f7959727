"""Conversations rendered by the model's own chat template in preflight, with the tokenizer only (no weights).

TRL renders each conversational record with the tokenizer's template while it tokenises, after the model
has loaded; a template that refuses a record (Gemma's "System role not supported", Mistral's "roles must
alternate") failed there with a traceback and no line. Here every record is rendered the way TRL will
render it (`template_calls`), and a refusal is a data error at the record's line (jobs/data/file_validator.py).

Conversational SFT trains on the assistant's tokens by default, as Axolotl, LLaMA-Factory and torchtune do.
Preflight tokenises those records and writes `input_ids` and `assistant_masks` into the prepared record;
SFTTrainer takes such rows as they are (it builds the labels from the mask, truncates and packs), so the
training processes do not tokenise them again. The mask comes from, in order:
- the template's own `{% generation %}` markers (`template_markers`);
- TRL's training version of a template it knows (`trl_training_template`, trl/chat_templates/);
- rendering the conversation turn by turn, as Axolotl does (`turn_by_turn`): the assistant's span is what
  a turn adds to the conversation before it, for a template that renders earlier turns the same whatever
  follows (prefix-preserving).
A template fitting none of them is exit 2 before any record is read, with the options.

The assistant turn's closing token (`<|im_end|>`, `<end_of_turn>`, `</s>`) must be inside the mask, or the
model never learns to stop: exit 2 otherwise. If it is not among the model's end-of-sequence ids, the
published generation config gets it (jobs/train/publish.py).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jinja2 import TemplateError

from jobs.errors import ConfigError, EnvironmentProblem

logger = logging.getLogger(__name__)

Messages = list[dict[str, Any]]
# The conversation TRL's own stop-token check renders: an assistant turn followed by another turn, because
# some templates never close the final assistant turn.
PROBE: Messages = [
    {"role": "user", "content": "Hi"},
    {"role": "assistant", "content": "Hello there"},
    {"role": "user", "content": "Bye"},
]
NO_TEMPLATE = (
    "the model's tokenizer has no chat template to render conversations with; use the instruct model's "
    "tokenizer, or set TRAIN_CHAT_TEMPLATE_PATH to a .jinja file or a tokenizer directory holding one (SFT)"
)
FOLD_HINT = "; set TRAIN_FOLD_SYSTEM_TURN=true to fold a system turn into the first user turn"
MASK_OPTIONS = (
    "set TRAIN_CHAT_TEMPLATE_PATH to a template whose assistant turns are inside {% generation %} ... "
    "{% endgeneration %}, or TRAIN_ASSISTANT_ONLY_LOSS=false to train on every token"
)


class TemplateRefusal(Exception):
    """The template refused a record, or rendered it in a way the job cannot train on: `path` is the field."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path, self.message = path, message


def fold_system_turn(messages: Any) -> Any:
    """A leading system turn folded into the first user turn (its text, a blank line, the user's), as
    LLaMA-Factory does for templates without a system role; anything else unchanged."""
    if not (isinstance(messages, list) and len(messages) > 1):
        return messages
    system, first = messages[0], messages[1]
    if system.get("role") != "system" or first.get("role") != "user":
        return messages
    if not (isinstance(system.get("content"), str) and isinstance(first.get("content"), str)):
        return messages
    return [{**first, "content": f"{system['content']}\n\n{first['content']}"}, *messages[2:]]


def folded(record: dict[str, Any]) -> dict[str, Any]:
    """The record with a system turn folded into the first user turn of each conversation that starts one."""
    return {name: fold_system_turn(value) if name != "tools" else value for name, value in record.items()}


@dataclass(frozen=True)
class TemplateCall:
    """One rendering TRL makes of a record: the field it names, the messages, and how the prompt ends."""

    path: str
    messages: Messages
    generation_prompt: bool = False
    continue_final: bool = False


def template_calls(record: dict[str, Any]) -> list[TemplateCall]:
    """The renderings TRL makes of a conversational record (trl.data_utils.apply_chat_template): the
    conversation, or the prompt alone and the prompt followed by each answer."""
    if isinstance(record.get("messages"), list):
        return [TemplateCall("/messages", record["messages"])]
    calls: list[TemplateCall] = []
    prompt = record.get("prompt")
    if isinstance(prompt, list) and prompt:
        continues = prompt[-1].get("role") == "assistant"
        calls.append(TemplateCall("/prompt", prompt, generation_prompt=not continues, continue_final=continues))
        prefix: Messages = prompt
    else:
        prefix = []
    for name in ("chosen", "rejected", "completion"):
        if isinstance(record.get(name), list):
            calls.append(TemplateCall(f"/{name}", [*prefix, *record[name]]))
    return calls


def tools_of(record: dict[str, Any]) -> list[Any] | None:
    tools = record.get("tools")
    if isinstance(tools, str):
        tools = json.loads(tools)
    return tools or None  # TRL's `or None`: Llama's template renders tool boilerplate for tools=[]


@dataclass(frozen=True)
class MaskPlan:
    """Where the assistant's tokens come from, and the template that renders the training text."""

    source: str  # template_markers | trl_training_template | turn_by_turn
    template: str


@dataclass
class Tokenized:
    input_ids: list[int]
    assistant_masks: list[int]


@dataclass
class ChatRenderer:
    """The model's template applied to records: refusals found, masks built, lengths counted."""

    tokenizer: Any
    template: str | None  # None: the tokenizer has none
    mask: MaskPlan | None = None  # set for conversational SFT with assistant-only loss
    max_length: int | None = None
    keep_end: bool = False  # TRL's truncation_mode=keep_end

    template_variables: dict[str, Any] = field(init=False, repr=False)
    render_template: Any = field(init=False, repr=False)

    def __post_init__(self) -> None:
        # Imported with the tokenizer, never by the parent's modules (tests/test_imports.py).
        from transformers.utils.chat_template_utils import render_jinja_template

        self.render_template = render_jinja_template
        # The variables apply_chat_template gives every template (bos_token, eos_token, ...), built once:
        # the tokenizer's property builds a new dict per call.
        self.template_variables = dict(self.tokenizer.special_tokens_map)

    def render(self, messages: Messages, tools: list[Any] | None, *, template: str | None = None,
               generation_prompt: bool = False, continue_final: bool = False) -> str:  # fmt: skip
        """The text `tokenizer.apply_chat_template(..., tokenize=False)` gives, through the function it renders
        with. Called directly because preflight renders every record three times (prompt, prompt + chosen,
        prompt + rejected): 53 µs a render against 81 µs, most of the check's cost on 200k records. The one
        step skipped that can change the text, dropping the keys whose value is None, is done here: TRL reads
        the prepared file with `datasets`, which gives every message the keys any message has, as None."""
        conversation = [{key: value for key, value in message.items() if value is not None} for message in messages]
        rendered, _ = self.render_template(
            conversations=[conversation], tools=tools, chat_template=template or self.template,
            add_generation_prompt=generation_prompt, continue_final_message=continue_final,
            **self.template_variables,
        )  # fmt: skip
        return str(rendered[0])

    def check(self, record: dict[str, Any]) -> Tokenized | None:
        """Render a conversational record as TRL will; its tokens and mask where the plan asks for them.
        Raises TemplateRefusal with the field and the template's own message."""
        if self.template is None:
            raise TemplateRefusal("/", NO_TEMPLATE)
        tools = tools_of(record)
        if self.mask is not None and "messages" in record:
            return self._tokenize(record["messages"], tools)
        for call in template_calls(record):
            self._render_call(call, tools)
        return None

    def _render_call(self, call: TemplateCall, tools: list[Any] | None, template: str | None = None) -> str:
        try:
            return self.render(call.messages, tools, template=template, generation_prompt=call.generation_prompt,
                               continue_final=call.continue_final)  # fmt: skip
        except (TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
            message = str(error) or type(error).__name__
            system = any(m.get("role") == "system" for m in call.messages)
            foldable = system and ("system" in message.lower() or "alternate" in message.lower())
            hint = FOLD_HINT if foldable else ""
            raise TemplateRefusal(
                call.path, f"the model's chat template refuses this conversation: {message}{hint}"
            ) from None

    def _tokenize(self, messages: Messages, tools: list[Any] | None) -> Tokenized:
        assert self.mask is not None
        if self.mask.source == "turn_by_turn":
            return self._turn_by_turn(messages, tools)
        try:
            out = self.tokenizer.apply_chat_template(
                messages, tools=tools, tokenize=True, return_dict=True, return_assistant_tokens_mask=True,
                chat_template=self.mask.template,
            )  # fmt: skip
        except (TemplateError, TypeError, ValueError, KeyError, IndexError, AttributeError) as error:
            # A refusal of the conversation itself raises here, with the template's message and any hint.
            self._render_call(TemplateCall("/messages", messages), tools, self.mask.template)
            raise TemplateRefusal("/messages", f"the template cannot mark this conversation's assistant tokens: "
                                               f"{error}; {MASK_OPTIONS}") from None  # fmt: skip
        return Tokenized(list(out["input_ids"]), list(out["assistant_masks"]))

    def _turn_by_turn(self, messages: Messages, tools: list[Any] | None) -> Tokenized:
        """Each assistant turn's span: what it adds to the rendering of the turns before it (with the
        generation prompt), in a rendering of the whole conversation that starts the same way."""
        whole = self._render_call(TemplateCall("/messages", messages), tools)
        spans = []
        for index, message in enumerate(messages):
            if message.get("role") != "assistant":
                continue
            before = self._render_call(TemplateCall("/messages", messages[:index], generation_prompt=True), tools)
            through = self._render_call(TemplateCall("/messages", messages[: index + 1]), tools)
            if not (through.startswith(before) and whole.startswith(through)):
                raise TemplateRefusal(f"/messages/{index}", (
                    "the chat template renders the turns before this one differently once it follows, so its "
                    f"tokens cannot be told apart for assistant-only loss; {MASK_OPTIONS}"))  # fmt: skip
            spans.append((len(before), len(through)))
        encoded = self.tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)
        mask = [int(any(start <= first < end for start, end in spans)) for first, _ in encoded["offset_mapping"]]
        return Tokenized(list(encoded["input_ids"]), mask)

    def trained_after_truncation(self, mask: Sequence[int]) -> int:
        """How many of a record's tokens are trained once TRL truncates it to max_length (packing cuts
        sequences at max_length too, into further rows, so this undercounts only under packing)."""
        if self.max_length is None:
            return sum(mask)
        kept = mask[-self.max_length :] if self.keep_end else mask[: self.max_length]
        return sum(kept)

    def token_count(self, record: dict[str, Any]) -> int:
        """The record's training length in tokens: its prepared ids, else the longer of its renderings."""
        if "input_ids" in record:
            return len(record["input_ids"])
        texts = self._texts(record)
        encoded = self.tokenizer(texts, add_special_tokens=False)["input_ids"]
        return max(len(ids) for ids in encoded)

    def _texts(self, record: dict[str, Any]) -> list[str]:
        tools = tools_of(record)
        calls = template_calls(record) if self.template is not None else []
        if calls:
            longest = [call for call in calls if call.path != "/prompt"] or calls
            return [self._render_call(call, tools) for call in longest]
        if "text" in record:
            return [record["text"]]
        prompt = record.get("prompt") or ""
        answers = [record[name] for name in ("completion", "chosen", "rejected") if isinstance(record.get(name), str)]
        return [prompt + answer for answer in answers] or [prompt]

    def marked(self, record: dict[str, Any]) -> str:
        """A prepared record's text with its trained tokens between [[ and ]], for the report."""
        ids, mask = record["input_ids"], record["assistant_masks"]
        pieces, start = [], 0
        for end in range(1, len(ids) + 1):
            if end == len(ids) or mask[end] != mask[start]:
                text = self.tokenizer.decode(ids[start:end])
                pieces.append(f"[[{text}]]" if mask[start] else text)
                start = end
        return "".join(pieces)


def load_tokenizer_for_data(model_path: str, chat_template_path: str | None) -> tuple[Any, str | None]:
    """The model's tokenizer and the template TRL will render with (TRAIN_CHAT_TEMPLATE_PATH applied as
    SFTTrainer applies it: a .jinja file's text, or a tokenizer directory's template with its added tokens)."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_path)
        if chat_template_path and Path(chat_template_path).is_file():
            tokenizer.chat_template = Path(chat_template_path).read_text(encoding="utf-8")
        elif chat_template_path:
            source = AutoTokenizer.from_pretrained(chat_template_path)
            tokenizer.chat_template = source.get_chat_template()
            tokenizer.add_tokens([t for t in source.added_tokens_decoder.values() if t.content not in tokenizer.vocab])
            tokenizer.eos_token = source.eos_token
    except (OSError, ValueError) as error:
        where = f"TRAIN_CHAT_TEMPLATE_PATH={chat_template_path}" if chat_template_path else model_path
        raise EnvironmentProblem(f"the tokenizer for the data check does not load from {where}: {error}") from None
    template = tokenizer.chat_template
    if isinstance(template, dict):  # named variants: `default` is the one apply_chat_template uses
        template = template.get("default")
    return tokenizer, template


def mask_plan(tokenizer: Any, template: str) -> MaskPlan:
    """Where conversational SFT's assistant tokens come from (the module docstring's order); ConfigError
    (exit 2) with the options where none works."""
    from trl.chat_template_utils import get_training_chat_template, has_generation_markers

    if not tokenizer.is_fast:
        raise ConfigError(
            "assistant-only loss (the default for conversational SFT) finds the assistant's tokens by their "
            "offsets, which only a fast tokenizer gives: add the model's tokenizer.json, or set "
            "TRAIN_ASSISTANT_ONLY_LOSS=false to train on every token"
        )
    if has_generation_markers(template):
        return MaskPlan("template_markers", template)
    try:
        training = get_training_chat_template(tokenizer)
    except ValueError:
        training = None
    if training:
        return MaskPlan("trl_training_template", training)
    renderer = ChatRenderer(tokenizer, template, MaskPlan("turn_by_turn", template))
    try:
        renderer.check({"messages": [{"role": "system", "content": "Be brief."}, *PROBE,
                                     {"role": "assistant", "content": "Goodbye"}]})  # fmt: skip
        return MaskPlan("turn_by_turn", template)
    except TemplateRefusal:
        pass
    try:
        renderer.check({"messages": [*PROBE, {"role": "assistant", "content": "Goodbye"}]})
        return MaskPlan("turn_by_turn", template)
    except TemplateRefusal as refusal:
        raise ConfigError(
            "assistant-only loss (the default for conversational SFT) needs the assistant's tokens, but the chat "
            f"template has no {{% generation %}} markers, TRL has no training version of it, and it does not render "
            f"a conversation turn by turn ({refusal.message}); {MASK_OPTIONS}"
        ) from None


def closing_token(renderer: ChatRenderer) -> tuple[int, str, bool] | None:
    """The assistant turn's closing token (the first added token after its text), and whether the mask
    trains it; None when the template renders no such token."""
    assert renderer.mask is not None
    tokenized = renderer.check({"messages": PROBE})
    assert tokenized is not None
    whole = renderer.render(PROBE, None, template=renderer.mask.template)
    content_end = whole.index("Hello there") + len("Hello there")
    offsets = renderer.tokenizer(whole, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
    added = set(renderer.tokenizer.get_added_vocab().values())
    for index, (start, _) in enumerate(offsets):
        token = tokenized.input_ids[index]
        if start >= content_end and token in added:
            return token, renderer.tokenizer.convert_ids_to_tokens(token), bool(tokenized.assistant_masks[index])
    return None


def check_stop_token(renderer: ChatRenderer, model_path: str) -> dict[str, Any]:
    """The closing token must be trained (ConfigError otherwise); whether the model stops on it already."""
    found = closing_token(renderer)
    if found is None:
        raise ConfigError(
            "the chat template closes an assistant turn with no special token, so a model trained on the "
            f"assistant's tokens would not learn to stop; {MASK_OPTIONS}"
        )
    token_id, token, trained = found
    if not trained:
        raise ConfigError(
            f"the chat template leaves the assistant turn's closing token {token!r} outside the trained tokens "
            f"({renderer.mask.source if renderer.mask else ''} mask): the model would never learn to stop; "
            f"{MASK_OPTIONS}"
        )
    eos_ids = end_of_sequence_ids(Path(model_path))
    stop = {"token": token, "id": token_id, "eos_ids": eos_ids, "in_eos_ids": token_id in eos_ids}
    if token_id not in eos_ids:
        logger.warning(
            "the assistant turn's closing token %r (id %d) is not among the model's end-of-sequence ids %s: "
            "final/generation_config.json will list it, so generation stops there",
            token, token_id, eos_ids,
        )  # fmt: skip
    return stop


def end_of_sequence_ids(model_dir: Path) -> list[int]:
    """The end-of-sequence ids of the model's config.json and generation_config.json."""
    found: list[int] = []
    for name in ("config.json", "generation_config.json"):
        try:
            value = json.loads((model_dir / name).read_text(encoding="utf-8")).get("eos_token_id")
        except (OSError, ValueError):
            continue
        for token in value if isinstance(value, list) else [value]:
            if isinstance(token, int) and token not in found:
                found.append(token)
    return found
