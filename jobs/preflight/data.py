"""The data step of preflight: resolve TRAIN_DATA_PATH to files (or each TRAIN_DATA_MIX source, mixed by
jobs/data/mixing.py), validate and split every record under the method's policy, write the prepared records
and `validation_report.json`.

The report is what later steps read instead of the data: the files with their sha256, the layout they
were found in, and the prepared files with theirs (the resume identity and the final manifest use it;
nothing reads TRAIN_DATA_PATH or TRAIN_DATA_MIX again).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import tempfile
from pathlib import Path
from typing import Any

from jobs.config.resolved import ResolvedRun
from jobs.config.settings import JobSettings
from jobs.data.chat import ChatRenderer, MaskPlan, check_stop_token, load_tokenizer_for_data, mask_plan
from jobs.data.lengths import percentiles, token_lengths
from jobs.data.mixing import summary_lines as mixture_lines
from jobs.data.mixing import validate_mixture
from jobs.data.mixture import MixSource, read_mixture, resolve_sources
from jobs.data.readers import check_readable
from jobs.data.report import chat_lines, ranked_lines, summary_lines
from jobs.data.sources import DataFiles, expand, resolve_data_files, sha256_of
from jobs.data.validate import Policy, ValidationResult, validate_dataset
from jobs.errors import ConfigError, DataError
from jobs.layout import OutputLayout
from jobs.methods import METHODS, methods_for_kind

logger = logging.getLogger("jobs.preflight")


def data_policy(method: str, **settings: Any) -> Policy:
    """How the data of `method` is judged: the dataset kinds it trains on, plus the given settings."""
    kinds = METHODS[method].dataset_kinds
    other_kinds = {kind for other in METHODS.values() for kind in other.dataset_kinds} - set(kinds)
    hints = {kind: tuple(methods_for_kind(kind)) for kind in other_kinds}
    return Policy(method=method, dataset_kinds=kinds, methods_by_kind=hints, **settings)


def _policy(run: ResolvedRun, renderer: ChatRenderer | None) -> Policy:
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
        fold_system=job.fold_system_turn,
        all_ranked_pairs=job.ranked_pairs == "all",
        renderer=renderer,
    )


def chat_renderer(run: ResolvedRun) -> tuple[ChatRenderer, str | None]:
    """The model's tokenizer and chat template, with the assistant-mask plan for conversational SFT; and why
    there is no plan where one would be needed (raised only if the data turns out to need it)."""
    model_path = str(run.model["model_name_or_path"])
    template_path = run.setting("chat_template_path") if run.method == "sft" else None
    tokenizer, template = load_tokenizer_for_data(model_path, template_path)
    truncation = run.setting("truncation_mode") if run.method == "sft" else None
    renderer = ChatRenderer(tokenizer, template, max_length=run.setting("max_length"),
                            keep_end=truncation == "keep_end")  # fmt: skip
    if not (run.assistant_only_loss and template):
        return renderer, None
    try:
        renderer.mask = mask_plan(tokenizer, template)
    except ConfigError as error:
        return renderer, str(error)
    return renderer, None


def validate_data(run: ResolvedRun, with_model: bool) -> dict[str, Any]:
    """Validate and split the data, write the prepared records and the report; raise DataError on refusal.
    With the model's tokenizer (`with_model`), every conversational record is rendered by its chat template
    and token lengths are counted."""
    job = run.job
    try:
        files = _data_files(job)
    except DataError as error:
        _write_report(run.layout, {"result": "refused", "reason": str(error), "method": run.method, "files": []})
        raise
    main = run.config.topology.is_main_machine
    renderer, no_mask = chat_renderer(run) if with_model else (None, None)
    with tempfile.TemporaryDirectory(prefix="trainjob-validation-") as private:
        # The output volume is shared by every machine of a multi-node run: machine 0 writes the prepared
        # records and the report; the others validate the same data into a directory of their own.
        prepared_dir = run.layout.data_dir if main else Path(private)
        result, mixture = _validate(run, files, _policy(run, renderer), prepared_dir)
        prepared = _prepared(prepared_dir, result) if result.refused is None else {}
        chat = chat_report(run, result, renderer, no_mask, prepared_dir) if renderer and not result.refused else None
    lengths = _lengths(run, result, renderer if main else None)
    layout = "mixture" if isinstance(files, list) else files.layout
    report = {**_report(run, result, lengths), "layout": layout, "mixture": mixture, "prepared": prepared,
              "chat": chat}  # fmt: skip
    if main:
        _write_report(run.layout, report)
    summary = summary_lines(result.files, result.split, lengths, with_errors=result.refused is None)
    for line in mixture_lines(mixture) + summary + ranked_lines(report["ranked_lists"]) + chat_lines(chat):
        logger.info("%s", line)
    if result.refused:
        raise DataError(result.refused, result.problems)
    return report


def _data_files(job: JobSettings) -> DataFiles | list[MixSource]:
    """TRAIN_DATA_PATH's files, or each TRAIN_DATA_MIX source's (checked by the config already)."""
    if job.data_mix:
        return resolve_sources(read_mixture(job.data_mix))
    return resolve_data_files(str(job.data_path), job.eval_data_path)


def _validate(
    run: ResolvedRun, files: DataFiles | list[MixSource], policy: Policy, prepared_dir: Path
) -> tuple[ValidationResult, dict[str, Any] | None]:
    """The data validated into `prepared_dir`; with a mixture, also the report's `mixture`."""
    if not isinstance(files, list):
        return validate_dataset(files.train, files.eval, policy, prepared_dir), None
    mixture = read_mixture(str(run.job.data_mix))
    evaluation = expand(run.job.eval_data_path, "TRAIN_EVAL_DATA_PATH")[0] if run.job.eval_data_path else ()
    for path in evaluation:
        check_readable(path, "TRAIN_EVAL_DATA_PATH")
    if mixture.test_split_size is not None:
        policy = dataclasses.replace(policy, eval_split=mixture.test_split_size)
    result, report = validate_mixture(mixture, files, evaluation, policy, prepared_dir)
    report["seed"] = policy.seed
    return result, report


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


def _lengths(run: ResolvedRun, result: ValidationResult, renderer: ChatRenderer | None) -> dict[str, Any] | None:
    train_file = run.layout.train_data
    if renderer is not None and not result.refused and train_file.is_file():
        return token_lengths(train_file, result.split["train"], renderer, run.setting("max_length"))
    return percentiles(result.char_lengths, "characters")


def chat_report(
    run: ResolvedRun, result: ValidationResult, renderer: ChatRenderer, no_mask: str | None, prepared_dir: Path
) -> dict[str, Any]:
    """What the model's template made of the data: the loss mask and its source, the share of tokens trained,
    the records left with none after truncation, one record with its trained tokens marked, the closing
    token. ConfigError where conversational SFT needs a mask the template cannot give, or one that leaves
    the closing token untrained."""
    formats = {file.format for file in result.files}
    chat: dict[str, Any] = {
        "template": "TRAIN_CHAT_TEMPLATE_PATH" if run.setting("chat_template_path") and run.method == "sft"
        else ("the model's" if renderer.template else None),
    }  # fmt: skip
    if run.method != "sft":
        return chat
    if "messages" in formats and run.assistant_only_loss:
        if renderer.mask is None:
            raise ConfigError(no_mask or "assistant-only loss needs the model's chat template")
        chat["stop"] = check_stop_token(renderer, str(run.model["model_name_or_path"]))
        chat.update(_trained_tokens(result, renderer.mask, renderer, prepared_dir))
    else:
        chat["loss_mask"] = {"assistant_only": False, "reason": _whole_sequence_reason(formats)}
    if formats & {"text", "prompt_completion"}:
        chat["eos_appended"] = (f"TRL appends the end-of-sequence token {renderer.tokenizer.eos_token!r} to each "
                                "text (or completion) that does not end with it")  # fmt: skip
    return chat


def _whole_sequence_reason(formats: set[str | None]) -> str:
    if "messages" in formats:
        return "TRAIN_ASSISTANT_ONLY_LOSS=false: every token of the conversation trains"
    if formats & {"prompt_completion", "conversational_prompt_completion"}:
        return "prompt-completion data: TRL's completion-only loss trains the completion"
    return "plain text: every token trains"


def _trained_tokens(result: ValidationResult, plan: MaskPlan, renderer: ChatRenderer, prepared_dir: Path) -> dict:
    tokens = sum(file.tokens for file in result.files)
    trained = sum(file.trained_tokens for file in result.files)
    empty = [{"file": file.path, **example} for file in result.files for example in file.no_trained_tokens["examples"]]
    example = None
    with open(prepared_dir / "train.jsonl", "rb") as handle:
        first = handle.readline()
        if first:
            example = renderer.marked(json.loads(first))
    return {
        "loss_mask": {"assistant_only": True, "source": plan.source},
        "tokens": tokens,
        "trained_tokens": trained,
        "trained_share": round(trained / tokens, 4) if tokens else 0.0,
        "no_trained_tokens": {
            "count": sum(file.no_trained_tokens["count"] for file in result.files),
            "examples": empty,
            "why": f"no assistant token is left once truncated to max_length={renderer.max_length}; TRL drops them",
        },
        "example_marked": example,
        "example_legend": "the first prepared record as the model sees it; trained tokens between [[ and ]]",
    }


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
        "ranked_lists": {"records": sum(file.ranked_records for file in result.files), "pairs": run.job.ranked_pairs},
        "files": [file.as_dict() for file in result.files],
    }
