"""TRAIN_DATA_MIX: a TRL dataset mixture (the `datasets:` of TRL's `DatasetMixtureConfig`), read as TRL means it.

The value is a YAML file's path (one line ending .yaml/.yml) or the YAML itself, in TRL's CLI config shape:
`datasets:` (each entry `path`, optional `name`, `data_dir`, `data_files`, `split`, `columns`, `fraction`,
and the job's own `format`), `streaming`, `test_split_size`, and beside them any other key of a TRL recipe
(`model_name_or_path`, `learning_rate`, ...), returned in `Mixture.settings` for jobs/config/settings.py to
hold to the TRAIN_* variables. Every problem is collected and raised together (ConfigError, exit 2), each
naming `datasets[i].<field>` and the fix.

What differs from TRL (`trl/scripts/utils.py`, `get_dataset`), deliberately: nothing is downloaded (a Hub
id must be a mounted folder); split slices and config names other than the default are refused; a share
must be positive; `test_split_size` must be a fraction (TRL also takes a row count); `streaming: true` is
refused (every record is validated and prepared first). `fraction` keeps TRL's meaning exactly (`shares`).
"""

from __future__ import annotations

import difflib
import glob
import hashlib
import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from jobs.data.adapters import ADAPTERS
from jobs.data.formats import FORMATS
from jobs.data.readers import check_readable
from jobs.data.sources import expand
from jobs.errors import ConfigError, JobError

VARIABLE = "TRAIN_DATA_MIX"
ENTRY_FIELDS = ("path", "name", "data_dir", "data_files", "split", "columns", "fraction", "format")
TRL_ENTRY_FIELDS = frozenset(ENTRY_FIELDS) - {"format"}  # TRL's DatasetConfig; `format` is the job's extension
TRL_MIXTURE_FIELDS = frozenset({"datasets", "streaming", "test_split_size"})
ENTRY_FORMATS = ("auto", *FORMATS, *ADAPTERS)
# datasets' packaged builders that read the file types this job reads (`path: json` with `data_files`).
BUILDERS = frozenset({"json", "parquet"})
# Keys of a TRL recipe that would do something this job does differently; refused, never ignored.
REFUSED_KEYS = {
    "env": "sets environment variables from the recipe; set them on the container instead",
    "dataset_name": "names a single dataset beside `datasets:`, which TRL then ignores; delete it",
    "dataset_config": "is ignored by TRL beside `datasets:`; give each entry's `name` instead, or delete it",
    "dataset_streaming": "is ignored by TRL beside `datasets:`; delete it (the job never streams)",
}
SPLIT_KEYS = {"dataset_train_split": "train", "dataset_test_split": "test"}  # TRL's defaults, the only values taken
NO_DOWNLOAD = "the job never downloads: mount it and give the folder"


@dataclass(frozen=True)
class MixEntry:
    """One `datasets[i]` entry, checked."""

    index: int
    path: str
    data_dir: str | None = None
    data_files: str | list[str] | dict[str, Any] | None = None  # as load_dataset takes them
    split: str = "train"
    columns: tuple[str, ...] | None = None
    fraction: float | None = None
    format: str = "auto"

    @property
    def label(self) -> str:
        return f"datasets[{self.index}] ({self.path})"


@dataclass(frozen=True)
class Mixture:
    """TRAIN_DATA_MIX, checked: the entries in order, the eval fraction, and the recipe's other keys."""

    entries: tuple[MixEntry, ...]
    test_split_size: float | None
    source: str  # "inline", or the YAML file's path
    yaml_sha256: str
    settings: Mapping[str, Any]  # the recipe's keys that are not the mixture's, as YAML gave them


@dataclass(frozen=True)
class MixSource:
    """An entry's files, in reading order, and how they were found."""

    entry: MixEntry
    files: tuple[Path, ...]
    layout: str  # "file", "glob", "directory", "snapshot" or "data_files"
    other_splits: tuple[str, ...] = ()  # a snapshot's splits that are not the entry's


class _StrictLoader(yaml.SafeLoader):
    """PyYAML's safe loader, refusing a key given twice in one mapping (it would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, (str, int, float, bool)):
                continue  # a list or mapping as a key is refused by the safe loader itself
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_mixture(value: str) -> Mixture:
    """TRAIN_DATA_MIX's value (a path or inline YAML) as a checked mixture; ConfigError with every problem."""
    mixture, problems = parse_mixture(value)
    if problems:
        raise ConfigError(f"{len(problems)} problem(s) with {VARIABLE} ({mixture.source})", problems)
    return mixture


def parse_mixture(value: str) -> tuple[Mixture, list[str]]:
    """The mixture with the entries that passed their checks, and every problem found; ConfigError only for
    YAML that does not read as a mapping with `datasets:`."""
    text, source = _text(value)
    document = _load(text, source)
    if not isinstance(document, dict) or "datasets" not in document:
        raise ConfigError(f"{VARIABLE} ({source}) is neither a .yaml/.yml path nor a YAML mapping with `datasets:` "
                          "(TRL's mixture: `datasets: [{path: /data/a.jsonl, fraction: 0.7}, ...]`)")  # fmt: skip
    problems: list[str] = []
    entries = _entries(document["datasets"], problems)
    test_split_size = _test_split_size(document.get("test_split_size"), problems)
    if document.get("streaming", False) is not False:
        problems.append(f"{VARIABLE}: streaming={document['streaming']!r}: the job validates and prepares every "
                        "record before training, so it never streams; delete the key or set it to false")  # fmt: skip
    settings = _settings(document, problems)
    digest = hashlib.sha256(text.encode()).hexdigest()
    return Mixture(tuple(entries), test_split_size, source, digest, settings), problems


def _text(value: str) -> tuple[str, str]:
    stripped = value.strip()
    if "\n" in stripped or not stripped.lower().endswith((".yaml", ".yml")):
        return value, "inline"
    try:
        return Path(stripped).read_text(encoding="utf-8"), stripped
    except (OSError, UnicodeDecodeError) as error:
        reason = error.strerror if isinstance(error, OSError) and error.strerror else str(error)
        raise ConfigError(f"{VARIABLE}={stripped} does not read ({reason}); mount the file, or give the YAML "
                          "itself as the value") from None  # fmt: skip


def _load(text: str, source: str) -> Any:
    try:
        return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader subclass
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{VARIABLE} ({source}){where}: {error.problem or error.context}; fix the YAML") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{VARIABLE} ({source}): {error}; fix the YAML") from None


def _entries(value: Any, problems: list[str]) -> list[MixEntry]:
    if not isinstance(value, list) or not value:
        problems.append(f"{VARIABLE}: `datasets` must be a non-empty list of entries (`- path: /data/a.jsonl`)")
        return []
    entries = [entry for i, item in enumerate(value) if (entry := _entry(i, item, problems))]
    given = [item.get("fraction") for item in value if isinstance(item, dict)]
    numbers = [float(f) for f in given if isinstance(f, (int, float)) and not isinstance(f, bool)]
    if numbers and len(numbers) == len(value) and sum(numbers) <= 0:
        problems.append(f"{VARIABLE}: the shares (`fraction`) sum to {sum(numbers)}: the mixture would hold nothing; "
                        "give each entry a positive share")  # fmt: skip
    fractions = [entry.fraction for entry in entries]
    if len(entries) == len(value) and any(f is not None for f in fractions) and any(f is None for f in fractions):
        unset = ", ".join(f"datasets[{e.index}]" for e in entries if e.fraction is None)
        problems.append(f"{VARIABLE}: `fraction` must be set for either all datasets in the mixture or none of them "
                        f"(as TRL requires); {unset} has none: give it one, or delete every `fraction`")  # fmt: skip
    return entries


def _entry(index: int, item: Any, problems: list[str]) -> MixEntry | None:
    where = f"{VARIABLE} datasets[{index}]"
    if isinstance(item, str):  # TRL's parser takes `- org/name` too; it is the entry's path
        item = {"path": item}
    if not isinstance(item, dict):
        problems.append(f"{where} is not a mapping; write `- path: /data/file.jsonl`")
        return None
    before = len(problems)
    for key in item:
        if key not in ENTRY_FIELDS:
            problems.append(f"{where}.{key} is not a field of a dataset entry{_did_you_mean(str(key), ENTRY_FIELDS)}")
    path = item.get("path")
    if not isinstance(path, str) or not path.strip():
        problems.append(f"{where}.path is missing; every entry names its data (a file, glob or folder)")
    _name(where, item.get("name"), problems)
    checked = {name: check(where, item.get(name), problems) for name, check in _FIELD_CHECKS.items()}
    if len(problems) > before:
        return None
    return MixEntry(index=index, path=str(path), **checked)


def _did_you_mean(name: str, choices: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(name, choices, n=1, cutoff=0.7)
    return f"; did you mean {close[0]}?" if close else f" (known: {', '.join(choices)})"


def _name(where: str, value: Any, problems: list[str]) -> None:
    if value not in (None, "default"):
        problems.append(f"{where}.name={value!r}: config names come from the dataset card, which the job does not "
                        "read; point `path` (or `data_dir`) at that config's folder and delete `name`")  # fmt: skip


def _data_dir(where: str, value: Any, problems: list[str]) -> str | None:
    if value is not None and not isinstance(value, str):
        problems.append(f"{where}.data_dir must be a folder name, not {value!r}")
        return None
    return value


def _data_files(where: str, value: Any, problems: list[str]) -> Any:
    """As load_dataset takes them: a pattern, a list of them, or a mapping of split to them (checked against
    the entry's split when its files are found)."""
    if value is None or isinstance(value, str) or _strings(value):
        return value
    if isinstance(value, dict) and all(isinstance(v, str) or _strings(v) for v in value.values()):
        return value
    problems.append(f"{where}.data_files must be a path or glob, a list of them, or a mapping of split to them")
    return None


def _strings(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, str) for item in value)


def _split(where: str, value: Any, problems: list[str]) -> str:
    if value is None:
        return "train"
    if not isinstance(value, str) or not value.strip():
        problems.append(f"{where}.split must be a split name such as train, not {value!r}")
        return "train"
    if any(char in value for char in "[]:%+"):
        problems.append(f"{where}.split={value!r}: split slices and sums are not supported in this version; name "
                        "one split (train) and use `fraction` to take part of it")  # fmt: skip
    return value


def _columns(where: str, value: Any, problems: list[str]) -> tuple[str, ...] | None:
    if value is None:
        return None
    if not _strings(value):
        problems.append(f"{where}.columns must be a non-empty list of column names, not {value!r}")
        return None
    return tuple(value)


def _fraction(where: str, value: Any, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        hint = f" (YAML 1.1 reads {value} as text: write it with a dot, 0.1)" if _numeric_text(value) else ""
        problems.append(f"{where}.fraction={value!r} is not a number{hint}; give the entry's share, such as 0.3")
        return None
    if not math.isfinite(value) or value <= 0:
        problems.append(f"{where}.fraction={value!r}: a share must be a positive number; give it one such as 0.3, "
                        "or delete the entry")  # fmt: skip
        return None
    return float(value)


def _numeric_text(value: Any) -> bool:
    try:
        float(value)
    except (TypeError, ValueError):
        return False
    return isinstance(value, str)


def _format(where: str, value: Any, problems: list[str]) -> str:
    if value is None:
        return "auto"
    if value not in ENTRY_FORMATS:
        hint = _did_you_mean(str(value), ENTRY_FORMATS)
        problems.append(f"{where}.format={value!r} is not a TRAIN_DATA_FORMAT value{hint}")
        return "auto"
    return str(value)


_FIELD_CHECKS = {
    "data_dir": _data_dir,
    "data_files": _data_files,
    "split": _split,
    "columns": _columns,
    "fraction": _fraction,
    "format": _format,
}


def _test_split_size(value: Any, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        problems.append(f"{VARIABLE}: test_split_size={value} is a row count to TRL; give the held-out fraction "
                        "instead, above 0 and at most 0.5 (such as 0.1)")  # fmt: skip
        return None
    if not isinstance(value, float) or not 0 < value <= 0.5:
        problems.append(f"{VARIABLE}: test_split_size={value!r} must be a fraction above 0 and at most 0.5 "
                        "(the share of records held out for evaluation, by prompt, seeded)")  # fmt: skip
        return None
    return value


def _settings(document: dict[str, Any], problems: list[str]) -> dict[str, Any]:
    """The recipe's keys beyond the mixture's: the refused ones reported, the rest returned."""
    settings = {}
    for key, value in document.items():
        if key in TRL_MIXTURE_FIELDS:
            continue
        if key in REFUSED_KEYS:
            problems.append(f"{VARIABLE}: `{key}` {REFUSED_KEYS[key]}")
        elif key in SPLIT_KEYS:
            if value != SPLIT_KEYS[key]:
                problems.append(f"{VARIABLE}: {key}={value!r}: the mixture is the training data; only TRL's default "
                                f"{SPLIT_KEYS[key]!r} is taken; delete the key")  # fmt: skip
        else:
            settings[str(key)] = value
    return settings


def resolve_sources(mixture: Mixture) -> list[MixSource]:
    """Each entry's files, checked to exist; ConfigError naming `datasets[i].path` and the fix otherwise."""
    problems: list[str] = []
    sources = []
    for entry in mixture.entries:
        try:
            source = _source(entry)
            for path in source.files:
                check_readable(path, f"{VARIABLE} datasets[{entry.index}].path")
            sources.append(source)
        except JobError as error:
            problems.append(str(error))
    if problems:
        raise ConfigError(f"{len(problems)} source(s) of {VARIABLE} not found", problems)
    return sources


def _source(entry: MixEntry) -> MixSource:
    where = f"{VARIABLE} datasets[{entry.index}].path"
    if entry.path in BUILDERS:  # `path: json` as TRL recipes name local files: data_files, or data_dir's files
        if entry.data_files:
            return _from_data_files(entry, Path(entry.data_dir or "."), where)
        if not entry.data_dir:
            raise ConfigError(f"{where}={entry.path!r} is a datasets builder: give its files in `data_files` (or "
                              "their folder in `data_dir`)")  # fmt: skip
        return _from_path(entry, Path(entry.data_dir), where)
    base = Path(entry.path) / entry.data_dir if entry.data_dir else Path(entry.path)
    if entry.data_files:
        if not base.is_dir():
            raise ConfigError(f"{where}={entry.path!r} is not a folder, and `data_files` are read from one; "
                              f"{NO_DOWNLOAD}")  # fmt: skip
        return _from_data_files(entry, base, where)
    return _from_path(entry, base, where)


def _from_path(entry: MixEntry, base: Path, where: str) -> MixSource:
    """A file, glob, folder of shards or snapshot folder (the entry's split of it)."""
    if not (base.exists() or any(char in str(base) for char in "*?[")):
        hub = "" if base.is_absolute() or entry.path.startswith(".") else " (a Hub id?)"
        raise ConfigError(f"{where}={entry.path!r}{_of_dir(entry)} is not a local file, glob or folder{hub}; "
                          f"{NO_DOWNLOAD}")  # fmt: skip
    files, splits, layout = expand(str(base), where)
    if layout == "snapshot":
        return _snapshot_split(entry, splits, where)
    if entry.split != "train":
        raise ConfigError(f"{where}={entry.path!r} is a {layout} with no named splits: its records are the train "
                          f"split, not {entry.split!r}; delete `split`, or point `path` at that split")  # fmt: skip
    return MixSource(entry, files, layout)


def _of_dir(entry: MixEntry) -> str:
    return f" with data_dir={entry.data_dir!r}" if entry.data_dir else ""


def _snapshot_split(entry: MixEntry, splits: dict[str, list[Path]], where: str) -> MixSource:
    if entry.split not in splits:
        raise ConfigError(f"{where}={entry.path!r} is a dataset snapshot with the splits {', '.join(sorted(splits))}, "
                          f"not {entry.split!r}; set `split` to one of them")  # fmt: skip
    others = tuple(sorted(split for split in splits if split != entry.split))
    return MixSource(entry, tuple(splits[entry.split]), "snapshot", others)


def _from_data_files(entry: MixEntry, base: Path, where: str) -> MixSource:
    patterns = entry.data_files
    if isinstance(patterns, dict):
        if entry.split not in patterns:
            raise ConfigError(f"{where}: data_files names the splits {', '.join(patterns)}, not {entry.split!r}; set "
                              "`split` to one of them")  # fmt: skip
        patterns = patterns[entry.split]
    elif entry.split != "train":
        raise ConfigError(f"{where}: data_files without split names are the train split, not {entry.split!r}; "
                          "delete `split`, or name the splits in data_files")  # fmt: skip
    files: list[Path] = []
    for pattern in [patterns] if isinstance(patterns, str) else list(patterns or ()):
        matches = sorted(glob.glob(str(base / pattern), recursive=True))
        if not matches:
            raise ConfigError(f"{where}: data_files {pattern!r} matches no file under {base}; {NO_DOWNLOAD}")
        files.extend(Path(match) for match in matches if Path(match).is_file())
    return MixSource(entry, tuple(files), "data_files")


def shares(counts: list[int], fractions: list[float | None]) -> list[int]:
    """How many of each source's first records the mixture takes: TRL's `get_dataset` expression, copied
    (fractions normalised to sum to one; the largest mixture that oversamples no source; Python's round).
    Without fractions, every record (TRL concatenates the datasets whole)."""
    if all(fraction is None for fraction in fractions):
        return list(counts)
    weights = [float(fraction or 0) / sum(float(f or 0) for f in fractions) for fraction in fractions]
    total = min(count / weight for count, weight in zip(counts, weights, strict=True) if weight > 0)
    return [round(weight * total) for weight in weights]
