"""The data step of preflight: resolve TRAIN_DATA_PATH to files, validate and split every record under the
method's policy, write the prepared records and `validation_report.json`.

The report is what later steps read instead of the data: the files with their sha256, the layout they
were found in, and the prepared files with theirs (the resume identity and the final manifest use it;
nothing reads TRAIN_DATA_PATH again).
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from jobs.config.resolved import ResolvedRun
from jobs.data.lengths import percentiles, token_lengths
from jobs.data.report import summary_lines
from jobs.data.sources import resolve_data_files, sha256_of
from jobs.data.validate import Policy, ValidationResult, validate_dataset
from jobs.errors import DataError
from jobs.layout import OutputLayout
from jobs.methods import METHODS, methods_for_kind

logger = logging.getLogger("jobs.preflight")


def data_policy(method: str, **settings: Any) -> Policy:
    """How the data of `method` is judged: the dataset kinds it trains on, plus the given settings."""
    kinds = METHODS[method].dataset_kinds
    other_kinds = {kind for other in METHODS.values() for kind in other.dataset_kinds} - set(kinds)
    hints = {kind: tuple(methods_for_kind(kind)) for kind in other_kinds}
    return Policy(method=method, dataset_kinds=kinds, methods_by_kind=hints, **settings)


def _policy(run: ResolvedRun) -> Policy:
    job = run.job
    return data_policy(
        run.method,
        data_format=job.data_format,
        drop_invalid=job.drop_invalid,
        max_invalid_fraction=job.max_invalid_fraction,
        max_shown=job.max_errors_shown,
        eval_split=job.eval_split,
        seed=int(run.setting("seed")),
        text_errors=frozenset(job.text_errors),
    )


def validate_data(run: ResolvedRun, count_tokens: bool) -> dict[str, Any]:
    """Validate and split the data, write the prepared records and the report; raise DataError on refusal."""
    job = run.job
    try:
        files = resolve_data_files(str(job.data_path), job.eval_data_path)
    except DataError as error:
        _write_report(run.layout, {"result": "refused", "reason": str(error), "method": run.method, "files": []})
        raise
    main = run.config.topology.is_main_machine
    with tempfile.TemporaryDirectory(prefix="trainjob-validation-") as private:
        # The output volume is shared by every machine of a multi-node run: machine 0 writes the prepared
        # records and the report; the others validate the same data into a directory of their own.
        prepared_dir = run.layout.data_dir if main else Path(private)
        result = validate_dataset(files.train, files.eval, _policy(run), prepared_dir)
        prepared = _prepared(prepared_dir, result) if result.refused is None else {}
    lengths = _lengths(run, result, count_tokens and main)
    report = {**_report(run, result, lengths), "layout": files.layout, "prepared": prepared}
    if main:
        _write_report(run.layout, report)
    for line in summary_lines(result.files, result.split, lengths, with_errors=result.refused is None):
        logger.info("%s", line)
    if result.refused:
        raise DataError(result.refused, result.problems)
    return report


def _prepared(directory: Path, result: ValidationResult) -> dict[str, dict[str, Any]]:
    """The prepared files as written: path, sha256 and record count of each side that has records."""
    found = {}
    for side in ("train", "eval"):
        path = directory / f"{side}.jsonl"
        if path.is_file():
            found[side] = {"path": str(path), "sha256": sha256_of(path), "records": result.split[side]}
    return found


def _write_report(layout: OutputLayout, report: dict[str, Any]) -> None:
    layout.report.write_text(json.dumps(report, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _lengths(run: ResolvedRun, result: ValidationResult, count_tokens: bool) -> dict[str, Any] | None:
    model_path = run.model.get("model_name_or_path")
    train_file = run.layout.train_data
    if count_tokens and model_path and not result.refused and train_file.is_file():
        try:
            return token_lengths(train_file, str(model_path), run.setting("max_length"))
        except (OSError, ValueError) as error:
            logger.warning("token lengths not counted: the tokenizer in %s does not load (%s)", model_path, error)
    return percentiles(result.char_lengths, "characters")


def _report(run: ResolvedRun, result: ValidationResult, lengths: dict[str, Any] | None) -> dict[str, Any]:
    by_format: dict[str, int] = {}
    for file in result.files:
        by_format[file.format or "unknown"] = by_format.get(file.format or "unknown", 0) + file.records
    return {
        "result": "refused" if result.refused else "ok",
        "reason": result.refused,
        "method": run.method,
        "counts_by_format": by_format,
        "split": result.split,
        "lengths": lengths,
        "files": [file.as_dict() for file in result.files],
    }
