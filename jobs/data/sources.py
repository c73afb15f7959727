"""Where the data is: TRAIN_DATA_PATH (and TRAIN_EVAL_DATA_PATH) resolved to the files to validate.

A path may be:
- one data file;
- a glob (`data/*.jsonl.gz`): every match, in name order;
- a directory of shards: every data file under it, in path order;
- a Hugging Face dataset snapshot folder, as `huggingface_hub` or an initializer downloads it: files or
  folders named by the Hub's split conventions (`data/train-00000-of-00003.parquet`, `train.jsonl`,
  `test.jsonl`, `validation/...`). The train split feeds training; validation (else test) feeds
  evaluation unless TRAIN_EVAL_DATA_PATH is set.

Hidden entries (`.cache/`, `.git/`) and the Hub's metadata files are skipped. The job never downloads.
"""

from __future__ import annotations

import glob
import hashlib
import re
import threading
from dataclasses import dataclass
from pathlib import Path

from jobs.data.readers import SUFFIXES, base_suffix, check_readable
from jobs.errors import DataError, EnvironmentProblem

# The Hub's split keywords (datasets' data_files conventions), as a whole word of a file or folder name.
SPLIT_KEYWORDS = {
    "train": ("train", "training"),
    "validation": ("validation", "valid", "dev", "val"),
    "test": ("test", "testing", "eval", "evaluation"),
}
_SPLIT_NAME = {word: split for split, words in SPLIT_KEYWORDS.items() for word in words}
_WORD = re.compile(r"[a-z]+")
METADATA_FILES = frozenset({"dataset_info.json", "dataset_infos.json", "dataset_dict.json", "state.json"})


@dataclass(frozen=True)
class DataFiles:
    """The files of one run's data, in reading order, and how they were found."""

    train: tuple[Path, ...]
    eval: tuple[Path, ...]
    layout: str  # "file", "glob", "directory" (shards) or "snapshot" (named splits)


def _is_glob(text: str) -> bool:
    return any(char in text for char in "*?[")


def _data_files(directory: Path) -> list[Path]:
    """Every data file under `directory`, skipping hidden entries and metadata, in path order."""
    found = []
    for path in sorted(directory.rglob("*")):
        parts = path.relative_to(directory).parts
        if any(part.startswith(".") for part in parts) or not path.is_file() or path.name in METADATA_FILES:
            continue
        if base_suffix(path) in SUFFIXES:
            found.append(path)
    return found


def split_of(path: Path, root: Path) -> str | None:
    """The split a snapshot file belongs to by the Hub's naming (its name first, then its folders)."""
    parts = path.relative_to(root).parts
    for part in (parts[-1].split(".")[0], *reversed(parts[:-1])):
        for word in _WORD.findall(part.lower()):
            if word in _SPLIT_NAME:
                return _SPLIT_NAME[word]
    return None


def _from_directory(directory: Path, variable: str) -> tuple[tuple[Path, ...], dict[str, list[Path]], str]:
    files = _data_files(directory)
    if not files:
        raise EnvironmentProblem(f"{variable}={directory} holds no data files ({', '.join(SUFFIXES)}, optionally .gz)")
    splits: dict[str, list[Path]] = {}
    for path in files:
        split = split_of(path, directory)
        if split:
            splits.setdefault(split, []).append(path)
    if not splits:
        return tuple(files), {}, "directory"
    unnamed = [str(p.relative_to(directory)) for p in files if split_of(p, directory) is None]
    if "train" not in splits or unnamed:
        named = ", ".join(f"{split}: {len(paths)} file(s)" for split, paths in sorted(splits.items()))
        what = f"{', '.join(unnamed[:3])} belong to no split" if unnamed else "there is no train split"
        raise DataError(
            f"{variable}={directory} looks like a dataset snapshot ({named}), but {what}; name the files by "
            "split (train, validation, test), or point the variable at the training files"
        )
    return tuple(splits["train"]), splits, "snapshot"


def expand(value: str, variable: str) -> tuple[tuple[Path, ...], dict[str, list[Path]], str]:
    """A file, glob, folder of shards or snapshot: its (train) files, a snapshot's splits, and the layout."""
    if _is_glob(value):
        matches = [Path(p) for p in sorted(glob.glob(value, recursive=True)) if Path(p).is_file()]
        if not matches:
            raise EnvironmentProblem(f"{variable}={value} matches no file; mount the data or fix the pattern")
        return tuple(matches), {}, "glob"
    path = Path(value)
    if path.is_dir():
        return _from_directory(path, variable)
    return (path,), {}, "file"


def resolve_data_files(data_path: str, eval_path: str | None) -> DataFiles:
    """The training and evaluation files; every one checked to exist, be readable and of a supported type."""
    train, splits, layout = expand(data_path, "TRAIN_DATA_PATH")
    evaluation: tuple[Path, ...] = ()
    if eval_path:
        evaluation = expand(eval_path, "TRAIN_EVAL_DATA_PATH")[0]
    elif splits:
        evaluation = tuple(splits.get("validation") or splits.get("test") or ())
    for variable, files in (("TRAIN_DATA_PATH", train), ("TRAIN_EVAL_DATA_PATH", evaluation)):
        for path in files:
            check_readable(path, variable)
    return DataFiles(train, evaluation, layout)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


class FileDigest:
    """The sha256 of a file, computed on a thread while the file is validated (hashlib releases the GIL
    on large buffers, and the second read comes from the page cache)."""

    def __init__(self, path: Path) -> None:
        self._digest = ""
        self._thread = threading.Thread(target=self._run, args=(path,), daemon=True)
        self._thread.start()

    def _run(self, path: Path) -> None:
        self._digest = sha256_of(path)

    def hexdigest(self) -> str:
        self._thread.join()
        return self._digest
