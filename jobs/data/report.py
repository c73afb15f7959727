"""The validation report: what was found in each file, written as JSON and summarised for people."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

EXAMPLES_PER_WARNING = 5


@dataclass
class FileReport:
    """Findings for one data file; `errors` holds the first `max_shown`, counts hold the totals."""

    path: str
    role: str  # "train" or "eval"
    sha256: str = ""
    source: int | None = None  # the TRAIN_DATA_MIX entry (`datasets[i]`) the file belongs to
    max_shown: int = 20
    format: str | None = None
    adapter: str | None = None
    records: int = 0
    valid: int = 0
    invalid_records: int = 0
    error_count: int = 0
    errors: list[dict[str, Any]] = field(default_factory=list)
    fatal: str | None = None
    wrong_kind: str | None = None  # the file holds data of a kind the method does not train on: why
    dropped: list[dict[str, Any]] = field(default_factory=list)
    warnings: dict[str, dict[str, Any]] = field(default_factory=dict)
    duplicates: dict[str, Any] = field(default_factory=lambda: {"count": 0, "examples": []})
    duplicate_prompts: dict[str, Any] = field(default_factory=lambda: {"count": 0, "examples": []})
    leakage: dict[str, Any] = field(default_factory=lambda: {"count": 0, "exact": 0, "normalized": 0, "examples": []})
    ranked_records: int = 0  # records with a ranked list of more than two answers
    # Conversational SFT with assistant-only loss (jobs/data/chat.py): tokens in all, tokens trained after
    # truncation to max_length, and the records left with none.
    tokens: int = 0
    trained_tokens: int = 0
    no_trained_tokens: dict[str, Any] = field(default_factory=lambda: {"count": 0, "examples": []})

    def add_error(self, line: int, path: str, message: str) -> None:
        self.error_count += 1
        if len(self.errors) < self.max_shown:
            self.errors.append({"file": self.path, "line": line, "path": path, "message": message})

    def add_warning(self, line: int, path: str, message: str) -> None:
        entry = self.warnings.setdefault(message, {"count": 0, "examples": []})
        entry["count"] += 1
        if len(entry["examples"]) < EXAMPLES_PER_WARNING:
            entry["examples"].append({"line": line, "path": path})

    @staticmethod
    def add_example(bucket: dict[str, Any], example: dict[str, Any]) -> None:
        bucket["count"] += 1
        if len(bucket["examples"]) < EXAMPLES_PER_WARNING:
            bucket["examples"].append(example)

    def error_lines(self) -> list[str]:
        """The shown errors as `file:line path: message`, the way a user jumps to them."""
        return [f"{e['file']}:{e['line']} {e['path']}: {e['message']}" for e in self.errors]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def absorb(self, other: FileReport, offset: int) -> None:
        """Merge the report of a later part of the same file (a shard), whose lines start `offset` lines on."""
        self.records += other.records
        self.valid += other.valid
        self.invalid_records += other.invalid_records
        self.ranked_records += other.ranked_records
        self.tokens += other.tokens
        self.trained_tokens += other.trained_tokens
        self.no_trained_tokens["count"] += other.no_trained_tokens["count"]
        examples = self.no_trained_tokens["examples"] + shifted(other.no_trained_tokens["examples"], offset)
        self.no_trained_tokens["examples"] = examples[:EXAMPLES_PER_WARNING]
        room = max(0, self.max_shown - len(self.errors))
        self.errors += shifted(other.errors, offset)[:room]
        self.error_count += other.error_count
        self.fatal = self.fatal or other.fatal
        self.wrong_kind = self.wrong_kind or other.wrong_kind
        self.dropped += shifted(other.dropped, offset)
        for message, entry in other.warnings.items():
            bucket = self.warnings.setdefault(message, {"count": 0, "examples": []})
            bucket["count"] += entry["count"]
            bucket["examples"] = (bucket["examples"] + shifted(entry["examples"], offset))[:EXAMPLES_PER_WARNING]
        for key, value in other.leakage.items():  # repeats are counted once the whole split is read
            if key == "examples":
                self.leakage[key] = (self.leakage[key] + shifted(value, offset))[:EXAMPLES_PER_WARNING]
            else:
                self.leakage[key] += value


def shifted(entries: list[dict[str, Any]], offset: int) -> list[dict[str, Any]]:
    """Findings with their line numbers moved `offset` lines on."""
    keys = ("line", "first_line")
    return [{**e, **{k: e[k] + offset for k in keys if k in e}} for e in entries]


def _where(bucket: dict[str, Any]) -> str:
    """'line 3, line 9 = line 2, ...': where the first examples of a finding are."""
    shown = [
        f"line {e['line']}" + (f" = line {e['first_line']}" if "first_line" in e else "") for e in bucket["examples"]
    ]
    if not shown:  # the split's first examples were all in earlier files
        return "examples under an earlier file"
    return ", ".join(shown) + (", ..." if bucket["count"] > len(shown) else "")


def summary_lines(
    files: list[FileReport], split: dict[str, Any], lengths: dict[str, Any] | None, *, with_errors: bool = True
) -> list[str]:
    """A short human summary, one line per fact. Without `with_errors`, the record errors are left to the
    refusal that lists them, so each is printed once."""
    lines = []
    for report in files:
        via = f" via the {report.adapter} adapter" if report.adapter else ""
        counts = (
            "not checked further: the method does not train on this kind of data"
            if report.wrong_kind
            else f"{report.valid} valid, {report.invalid_records} invalid, "
            f"{report.duplicates['count']} exact duplicates"
        )
        lines.append(f"{report.path} ({report.role}): {report.records} records, format {report.format}{via}; {counts}")
        lines += [f"  error {line}" for line in report.error_lines()] if with_errors else []
        if with_errors and report.error_count > len(report.errors):
            lines.append(f"  ... and {report.error_count - len(report.errors)} more errors (see the JSON report)")
        for message, entry in report.warnings.items():
            lines.append(f"  warning: {message}: {entry['count']} record(s) ({_where(entry)})")
        for name, bucket in (
            ("exact duplicate records", report.duplicates),
            ("duplicate prompts (up to case and whitespace)", report.duplicate_prompts),
        ):
            if bucket["count"]:
                lines.append(f"  {name}: {bucket['count']} ({_where(bucket)})")
        if report.leakage["count"]:
            leak = report.leakage
            lines.append(f"  leakage into training: {leak['exact']} exact, {leak['normalized']} after normalising")
    lines.append(f"split: {split['train']} train, {split['eval']} eval records")
    if lengths:
        sample = lengths.get("sample")
        of = f", a sample of {sample['records']} of {sample['of']} records" if sample else ""
        lines.append(
            f"lengths ({lengths['unit']}{of}): p50 {lengths['p50']}, p95 {lengths['p95']}, max {lengths['max']}"
            + (f"; {lengths['over_max_length']} over max_length {lengths['max_length']} "
               f"({lengths['truncated_fraction']:.1%} would be truncated)" if "over_max_length" in lengths else "")
        )  # fmt: skip
    return lines


def chat_lines(chat: dict[str, Any] | None) -> list[str]:
    """What the model's chat template made of the data (jobs/preflight/data.py: chat_report), for people."""
    if not chat:
        return []
    lines = []
    mask = chat.get("loss_mask") or {}
    if mask.get("assistant_only"):
        stop = chat["stop"]
        added = "" if stop["in_eos_ids"] else ", added to the published end-of-sequence ids"
        share = f"{chat['trained_share']:.1%} of {chat['tokens']} tokens train"
        lines.append(f"loss on the assistant's tokens ({mask['source']} mask): {share}; the turn's closing token "
                     f"{stop['token']!r} is trained{added}")  # fmt: skip
        empty = chat["no_trained_tokens"]
        if empty["count"]:
            lines.append(f"  {empty['count']} record(s) keep no assistant token once truncated ({_where(empty)}): "
                         "TRL drops them; raise TRAIN_MAX_LENGTH or shorten their prompts")  # fmt: skip
    elif mask:
        lines.append(f"loss: {mask['reason']}")
    if chat.get("eos_appended"):
        lines.append(chat["eos_appended"])
    return lines


def ranked_lines(ranked: dict[str, Any]) -> list[str]:
    if not ranked["records"]:
        return []
    pairs = "every pair" if ranked["pairs"] == "all" else "the first answer over the second"
    return [f"ranked lists: {ranked['records']} record(s) rank more than two answers; {pairs} trains "
            "(TRAIN_RANKED_PAIRS)"]  # fmt: skip
