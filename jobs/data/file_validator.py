"""One file, one streaming pass: read, convert, check, split and write each record.

Both the sequential path and the sharded one (jobs/data/shards.py) run this validator; a shard's
findings are merged into its file's with `absorb`.
"""

from __future__ import annotations

import logging
from array import array
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

from jobs.data.adapters import ADAPTERS, Adapter, detect_adapter
from jobs.data.chat import TemplateRefusal, Tokenized, folded
from jobs.data.formats import FORMATS, MESSAGE_KEYS, Format, SchemaChecker, deepest, native_format
from jobs.data.hygiene import hygiene, screened_kinds
from jobs.data.keys import KeyTable, LeakIndex
from jobs.data.prepared import PreparedWriter
from jobs.data.readers import FatalReadError, Unparsable, iter_records
from jobs.data.report import FileReport
from jobs.data.semantics import Finding, check_record, message_text
from jobs.data.split import canonical, digest, goes_to_eval, normalized_key, prompt_key

if TYPE_CHECKING:
    from jobs.data.chat import ChatRenderer

logger = logging.getLogger(__name__)

CANONICAL_MAX_DEPTH = 254  # orjson writes no deeper (jobs/data/split.py: canonical)


@dataclass(frozen=True)
class Policy:
    """How to judge the data: what the method trains on, and what to do with bad records."""

    method: str
    dataset_kinds: tuple[str, ...]  # TRL's dataset kinds that the method trains on
    # For a file of another kind: which methods would take it, for the error's hint.
    methods_by_kind: Mapping[str, tuple[str, ...]] = field(default_factory=dict)
    data_format: str = "auto"
    drop_invalid: bool = False
    max_invalid_fraction: float = 0.01
    max_shown: int = 20
    eval_split: float = 0.0
    seed: int = 42
    text_errors: frozenset[str] = frozenset()  # character hygiene kinds that are errors (TRAIN_TEXT_ERRORS)
    fold_system: bool = False  # TRAIN_FOLD_SYSTEM_TURN
    all_ranked_pairs: bool = False  # TRAIN_RANKED_PAIRS=all
    # A mixture entry's `columns` (TRAIN_DATA_MIX): each record is cut to them before its format is detected,
    # as TRL's `select_columns` does before mixing. None: every column.
    columns: tuple[str, ...] | None = None
    # The model's chat template, when a model is named: every conversational record is rendered by it
    # (jobs/data/chat.py). Not sent back from shard workers.
    renderer: ChatRenderer | None = None


@dataclass
class SplitState:
    """What the files of one split (its shards) share: the format the first record locked, and the key
    tables of its accepted records (duplicates are found across shards, once the split is read)."""

    files: list[str] = field(default_factory=list)
    shape: tuple[Format, Adapter | None] | None = None
    shape_file: str = ""  # where the shape was locked
    shape_line: int = 0
    keeps_normalized: bool = False  # a training split with evaluation files to check for leakage
    seen: KeyTable = field(default_factory=KeyTable)  # exact digests
    prompts: KeyTable = field(default_factory=KeyTable)  # the normalised prompts of paired records
    normalized: KeyTable = field(default_factory=KeyTable)  # the normalised digests, when kept

    def tables(self) -> tuple[KeyTable, KeyTable, KeyTable]:
        return self.seen, self.prompts, self.normalized


def prepared_record(record: dict[str, Any], fmt: Format) -> dict[str, Any]:
    """Only the format's fields (and `tools`, as JSON text: TRL reads either form, and one Arrow type fits
    every record's); messages keep only their known keys, text-only content parts become strings."""
    if not fmt.conversational:
        return {name: record[name] for name in fmt.fields}
    prepared = {name: _prepared_messages(record[name]) for name in fmt.fields}
    tools = record.get("tools")
    if tools is not None:
        prepared["tools"] = tools if isinstance(tools, str) else orjson.dumps(tools).decode()
    return prepared


def _prepared_messages(value: Any) -> Any:
    if not isinstance(value, list):  # a non-conversation field, such as an unpaired preference label
        return value
    return [{**{k: m[k] for k in MESSAGE_KEYS if k in m}, "content": _flat_content(m.get("content"))} for m in value]


def _flat_content(content: Any) -> Any:
    if isinstance(content, list) and all(isinstance(p, dict) and p.get("type") == "text" for p in content):
        return message_text(content)
    return content


def prompt_part(record: dict[str, Any], fmt: Format) -> Any:
    """The record's prompt: its prompt field, or a conversation before its last turn; None without one."""
    if "prompt" in fmt.fields:
        return record["prompt"]
    if fmt.conversational and len(record[fmt.fields[0]]) > 1:
        return record[fmt.fields[0]][:-1]  # messages, or the shared history of an implicit-prompt pair
    return None


def text_length(record: dict[str, Any], fmt: Format) -> int:
    total = 0
    if not fmt.conversational:
        for name in fmt.texts:
            total += len(record[name])
        return total
    for name in fmt.fields:
        value = record[name]
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, list):
            total += sum(len(message_text(m.get("content"))) for m in value)
    return total


class FileValidator:
    """Validates one file in one pass, writing what it accepts."""

    def __init__(
        self,
        path: Path,
        role: str,
        policy: Policy,
        writer: PreparedWriter,
        leak: LeakIndex | None,
        *,
        split: SplitState | None = None,
    ) -> None:
        self.path, self.role, self.policy, self.writer, self.leak = path, role, policy, writer, leak
        self.quiet = False  # shard workers leave the adapter notice to the parent
        self.report = FileReport(path=str(path), role=role, max_shown=policy.max_shown)
        self.split = split or SplitState(files=[str(path)])
        # Normalised keys cost more than the rest of a record's checks: a whole record's only for the leakage
        # check against evaluation files, a prompt's only for a split or paired data (duplicate prompts).
        self.needs_normalized = self.split.keeps_normalized or leak is not None
        if str(path) not in self.split.files:
            self.split.files.append(str(path))
        self.number = self.split.files.index(str(path))
        for table in self.split.tables():
            table.start_file(self.number)
        self.shape = self.split.shape  # a later shard starts with the format its split locked
        self.checker: SchemaChecker | None = SchemaChecker(self.shape[0].name) if self.shape else None
        if self.shape:
            self._note_shape(self.shape)
        # A native record of the locked shape (None: an adapter's shape, or none seen yet): its keys, first
        # field and whether that holds a conversation; records like it skip format detection.
        self._shape_keys: set[str] | None = None
        self._first, self._conversational = "", False
        self.lengths = array("I")

    def run(self, records: Iterable[tuple[int, Any]] | None = None) -> FileReport:
        """Every record of the file (or of `records`: line, parsed record)."""
        report, process = self.report, self._process
        for line, item in records if records is not None else iter_records(self.path):
            if type(item) is FatalReadError:
                report.fatal = f"{self.path}:{line}: {item.message}"
                break
            report.records += 1
            if report.wrong_kind is None:  # data of the wrong kind is only counted, for the refusal
                process(line, item)
        return report

    def _process(self, line: int, item: Any) -> None:
        if type(item) is not dict:
            return self._refuse_item(line, item)
        if self.policy.columns is not None and (item := self._projected(line, item)) is None:
            return None
        shape = self.shape if self._native_keys(item) else self._shape(line, item)
        if shape is None:
            return None
        fmt, adapter = shape
        if adapter is None:
            return self._check(line, item, fmt)
        try:
            records = self._convert(adapter, item)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as error:
            return self._reject(line, [("/", f"cannot convert from {adapter.name}: {_why(error)}")])
        for record in records:
            self._check(line, record, fmt, converted=True)
        return None

    def _projected(self, line: int, item: dict[str, Any]) -> dict[str, Any] | None:
        assert self.policy.columns is not None
        missing = [name for name in self.policy.columns if name not in item]
        if missing:
            self._reject(line, [("/", f"has no column {', '.join(map(repr, missing))}, which the mixture entry's "
                                      "`columns` names; fix the record or the entry's `columns`")])  # fmt: skip
            return None
        return {name: item[name] for name in self.policy.columns}

    def _convert(self, adapter: Adapter, item: dict[str, Any]) -> list[dict[str, Any]]:
        """The adapter's record; for a ranked list, its first pair (or every pair), counted as ranked."""
        if adapter.pairs is None:
            return [adapter.convert(item)]
        pairs = adapter.pairs(item)
        if len(pairs) > 1:
            self.report.ranked_records += 1
        return pairs if self.policy.all_ranked_pairs else pairs[:1]

    def _refuse_item(self, line: int, item: Any) -> None:
        if isinstance(item, Unparsable):
            return self._reject(line, [("/", item.message)])
        kind = "null" if item is None else type(item).__name__
        return self._reject(line, [("/", f"expected a JSON object, got {kind}")])

    def _check(self, line: int, record: dict[str, Any], fmt: Format, converted: bool = False) -> None:
        assert self.checker is not None
        if not self.checker.is_valid(record):
            return self._reject(line, self.checker.violations(record), converted=converted)
        findings = check_record(record, fmt)
        if findings:
            self._warn(line, findings)
            errors = [(f.path, f.message) for f in findings if not f.warning]
            if errors:
                return self._reject(line, errors, converted=converted)
        if not fmt.conversational:
            return self._accept(line, record, fmt)
        if self.policy.fold_system:
            record = folded(record)
        try:
            tokens = self.policy.renderer.check(record) if self.policy.renderer else None
        except TemplateRefusal as refusal:
            return self._reject(line, [(refusal.path, refusal.message)], converted=converted)
        return self._accept(line, record, fmt, tokens)

    def _detect(self, item: dict[str, Any]) -> tuple[Format, Adapter | None] | None:
        chosen = self.policy.data_format
        if chosen in ADAPTERS:
            return FORMATS[ADAPTERS[chosen].target], ADAPTERS[chosen]
        if chosen in FORMATS:
            return FORMATS[chosen], None
        adapter = detect_adapter(item)
        if adapter:
            return FORMATS[adapter.target], adapter
        name = native_format(item)
        return (FORMATS[name], None) if name else None

    def _shape(self, line: int, item: dict[str, Any]) -> tuple[Format, Adapter | None] | None:
        if self.shape is not None and self._same_shape(item):
            if self._shape_keys is None and self.shape[1] is None:  # a shape an earlier file or shard locked
                self._remember_native(item, self.shape[0])
            return self.shape
        shape = self._detect(item)
        if shape is None:
            keys = ", ".join(sorted(item)) or "none"
            self._reject(line, [("/", f"unknown format (keys: {keys}); see schemas/ or set TRAIN_DATA_FORMAT")])
            return None
        if self.shape is None:
            if shape[1] is None:
                self._remember_native(item, shape[0])
            self._lock(line, shape)
            if self.report.wrong_kind:
                return None
        elif shape != self.shape:
            name, locked = _shape_name(shape), _shape_name(self.shape)
            self._reject(line, [("/", f"format {name} differs from the data's format {locked} (at "
                                      f"{self.split.shape_file}:{self.split.shape_line}); one dataset holds one "
                                      "format")])  # fmt: skip
            return None
        return shape

    def _remember_native(self, item: dict[str, Any], fmt: Format) -> None:
        self._shape_keys, self._first, self._conversational = set(item), fmt.fields[0], fmt.conversational

    def _native_keys(self, item: dict[str, Any]) -> bool:
        """The common case, tested first: the keys and first field type of the native record that locked the
        shape."""
        return item.keys() == self._shape_keys and (type(item[self._first]) is list) == self._conversational

    def _same_shape(self, item: dict[str, Any]) -> bool:
        """The cheap test for the common case: this record fits the adapter, or has the keys and first field
        type of the native record that locked the shape, or fits that format on its own."""
        assert self.shape is not None
        fmt, adapter = self.shape
        if adapter is not None:
            return self.policy.data_format == adapter.name or adapter.matches(item)
        if self._native_keys(item):
            return True
        return self.policy.data_format == fmt.name or native_format(item) == fmt.name

    def _note_shape(self, shape: tuple[Format, Adapter | None]) -> None:
        self.report.format, self.report.adapter = shape[0].name, shape[1].name if shape[1] else None

    def _lock(self, line: int, shape: tuple[Format, Adapter | None]) -> None:
        fmt = shape[0]
        self.shape = self.split.shape = shape
        self.split.shape_file, self.split.shape_line = str(self.path), line
        self._note_shape(shape)
        if fmt.kind not in self.policy.dataset_kinds:
            self.report.wrong_kind = self._wrong_kind(line, shape)
            return
        self.checker = SchemaChecker(fmt.name)
        self._announce()

    def _wrong_kind(self, line: int, shape: tuple[Format, Adapter | None]) -> str:
        fmt, policy = shape[0], self.policy
        accepted = " or ".join(_kind_label(kind) for kind in policy.dataset_kinds)
        others = policy.methods_by_kind.get(fmt.kind, ())
        fix = f"set TRAIN_METHOD to {' or '.join(others)}, or use " if others else "use "
        return (
            f"{_kind_label(fmt.kind)} data ({_shape_name(shape)}, detected at line {line}), but "
            f"TRAIN_METHOD={policy.method} trains on {accepted} data; {fix}{accepted} data"
        )

    def _announce(self) -> None:
        assert self.shape is not None
        fmt, adapter = self.shape
        if adapter and self.policy.data_format == "auto" and not self.quiet:
            logger.info(
                "%s: records look like %s; converting them to %s (set TRAIN_DATA_FORMAT=%s to make it explicit)",
                self.path, adapter.description, fmt.name, adapter.name,
            )  # fmt: skip

    def _reject(self, line: int, problems: list[tuple[str, str]], converted: bool = False) -> None:
        self.report.invalid_records += 1
        note = f" (in the record converted by the {self.report.adapter} adapter)" if converted else ""
        for path, message in problems:
            self.report.add_error(line, path, message + note)
        if self.policy.drop_invalid:
            self.report.dropped.append({"line": line, "problems": [f"{p}: {m}" for p, m in problems]})

    def _warn(self, line: int, findings: list[Finding]) -> None:
        warned: set[str] = set()
        for finding in findings:
            if finding.warning and finding.message not in warned:  # one count per record and kind
                warned.add(finding.message)
                self.report.add_warning(line, finding.path, finding.message)

    def _accept(self, line: int, record: dict[str, Any], fmt: Format, tokens: Tokenized | None = None) -> None:
        """A record that passed its checks: its character hygiene, then keys, leakage, side and write."""
        prepared = prepared_record(record, fmt)
        if tokens is not None:
            self._count_trained(line, tokens)
            prepared.update(input_ids=tokens.input_ids, assistant_masks=tokens.assistant_masks)
        try:
            data = canonical(prepared) + b"\n"
        except orjson.JSONEncodeError:
            return self._reject(line, [_unwritable(prepared)])
        findings = hygiene(record, fmt, screened_kinds(data), self.policy.text_errors)
        if findings:
            self._warn(line, findings)
            errors = [(f.path, f"{f.message} (an error under TRAIN_TEXT_ERRORS)") for f in findings if not f.warning]
            if errors:
                return self._reject(line, errors)
        normalized = normalized_key(prepared[name] for name in fmt.fields) if self.needs_normalized else b""
        key, paired = self._side_key(prepared, fmt)
        held_out = key is not None and goes_to_eval(key, self.policy.eval_split, self.policy.seed)
        return self._keep(line, data, (digest(data), key, paired, held_out, text_length(record, fmt), normalized))

    def _count_trained(self, line: int, tokens: Tokenized) -> None:
        assert self.policy.renderer is not None
        renderer = self.policy.renderer
        trained = renderer.trained_after_truncation(tokens.assistant_masks)
        self.report.tokens += min(len(tokens.input_ids), renderer.max_length or len(tokens.input_ids))
        self.report.trained_tokens += trained
        if trained == 0:
            self.report.add_example(self.report.no_trained_tokens, {"line": line})

    def _side_key(self, prepared: dict[str, Any], fmt: Format) -> tuple[bytes | None, bool]:
        """The key a record's side is drawn from: its prompt's (the whole record's without one), so that records
        sharing a prompt share a side; and whether it is a pair's prompt (unpaired data repeats each prompt by
        design). None when neither a split nor duplicate prompts need it."""
        prompt = prompt_part(prepared, fmt)
        paired = prompt is not None and "rejected" in fmt.fields
        if not (paired or self.policy.eval_split > 0):
            return None, False
        if isinstance(prompt, str):
            return prompt_key(prompt), paired
        return normalized_key((prompt,) if prompt is not None else (prepared[name] for name in fmt.fields)), paired

    def _keep(self, line: int, data: bytes, keys: tuple[bytes, bytes | None, bool, bool, int, bytes]) -> None:
        """An accepted record's keys, leakage check, side and write. `keys`: its digest, side key (None: not
        needed), whether that is a pair's prompt, whether the split holds it out, its text length and its
        normalised key (empty: not needed)."""
        exact, key, paired, held_out, length, normalized = keys
        self.split.seen.add(exact, line)
        if self.role == "eval" and self._leaks(line, exact, normalized):
            return
        if paired:
            self.split.prompts.add(key, line)  # type: ignore[arg-type]  # a pair always has its prompt's key
        if self.split.keeps_normalized:
            self.split.normalized.add(normalized, line)
        self.writer.write("eval" if self.role == "eval" or held_out else "train", data)
        self.lengths.append(length)
        self.report.valid += 1

    def _leaks(self, line: int, exact: bytes, normalized: bytes) -> bool:
        assert self.leak is not None
        kind, index = "exact", self.leak.exact
        position = index.find(exact)
        if position is None and normalized:
            kind, index = "normalized", self.leak.normalized
            position = index.find(normalized)
        if position is None:
            return False
        where = index.where(position, self.leak.files)
        self.report.add_example(self.report.leakage, {"line": line, **where, "kind": kind})
        self.report.leakage[kind] += 1
        what = "equal to" if kind == "exact" else "equal after normalising case and whitespace to"
        at = f"{where['train_file']}:{where['train_line']}"
        self._reject(line, [("/", f"leaks into training: {what} the training record at {at}")])
        return True

    def absorb(self, shard: FileValidator, offset: int) -> None:
        """Merge a shard's findings (lines relative to its range) into this file's, `offset` lines on."""
        if self.shape is None and shard.shape is not None:
            self.shape = self.split.shape = shard.shape
            self.split.shape_file, self.split.shape_line = str(self.path), shard.split.shape_line + offset
            self._note_shape(shard.shape)
            self._announce()
        self.report.absorb(shard.report, offset)
        for mine, theirs in zip(self.split.tables(), shard.split.tables(), strict=True):
            mine.extend(theirs, offset)
        self.lengths.extend(shard.lengths)


def _why(error: Exception) -> str:
    """An adapter's failure in words, never an exception's repr."""
    if isinstance(error, KeyError):
        return f"the field {error.args[0]!r} is missing" if error.args else "a field is missing"
    return str(error) or type(error).__name__


def _unwritable(prepared: dict[str, Any]) -> tuple[str, str]:
    """Why a record has no canonical JSON: nested deeper than JSON writers go, or a lone surrogate (a
    `\\ud800` escape in a .json file) that is not text."""
    depth, pointer = deepest(prepared)
    if depth > CANONICAL_MAX_DEPTH:
        return pointer, (f"nested {depth} levels deep; the prepared file's JSON holds at most {CANONICAL_MAX_DEPTH}: "
                         "flatten the structure, or write deep values (tool-call arguments) as JSON text")  # fmt: skip
    return "/", ("holds a lone UTF-16 surrogate escape (\\ud800-\\udfff), which is not text: the text was cut "
                 "inside a character upstream; fix or drop the record")  # fmt: skip


def _kind_label(kind: str) -> str:
    return kind.replace("_", " ").replace("prompt completion", "prompt-completion")


def _shape_name(shape: tuple[Format, Adapter | None]) -> str:
    fmt, adapter = shape
    return f"{adapter.name} -> {fmt.name}" if adapter else fmt.name
