"""Staging the trained model: `final.partial/`, with what produced it, for the parent to check and publish.

`final/` holds the model or LoRA adapter and the tokenizer (`from_pretrained`-loadable), the effective
configuration (secrets redacted), the validation report, the log history and `run_manifest.json`: package
versions, git revision, the data's files and hashes as preflight recorded them (the sources are never
read again here), the run id. It is written into `final.partial/`, with the logits the trained model gives a
sample prompt beside it; once the training processes have exited, the entrypoint loads the staged copy
from disk, compares its logits and renames it into place (jobs/release/reload.py); an existing `final/` is
kept under a timestamped name, never overwritten.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import logging
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

from jobs.config.resolved import ResolvedRun
from jobs.config.settings import redact
from jobs.errors import TrainingDiverged
from jobs.train.guards.divergence import weights_are_finite

logger = logging.getLogger("jobs.train")

PACKAGES = ("torch", "transformers", "trl", "peft", "accelerate", "datasets", "deepspeed", "bitsandbytes")


def save_final(trainer: Any, run: ResolvedRun, tokenizer: Any) -> None:
    """Write model/adapter, tokenizer, effective config, validation report and manifest; then publish."""
    layout = run.layout
    partial = layout.final_partial
    if trainer.is_world_process_zero():
        discard(partial)
    trainer.accelerator.wait_for_everyone()
    if not weights_are_finite(trainer.model):
        raise TrainingDiverged("the trained weights hold NaN or infinite values; final/ was not published")
    reference = sample_logits(trainer)  # every rank: under ZeRO-3 the forward pass gathers the shards
    trainer.save_model(str(partial))  # every rank: DeepSpeed ZeRO-3 gathers the shards here
    if trainer.is_world_process_zero():
        tokenizer.save_pretrained(str(partial))
        report = _recorded_report(layout.report)
        chat = (report or {}).get("chat") or {}
        stops_on_closing_token(partial, run, chat.get("stop"))
        _write_json(partial / "effective_config.json", _effective_config(trainer, run, chat.get("loss_mask")))
        _write_json(partial / "log_history.json", trainer.state.log_history)
        if report is not None:
            shutil.copy2(layout.report, partial / layout.report.name)
        _write_json(partial / "run_manifest.json", manifest(run, report, trainer.state.global_step))
        from safetensors.torch import save_file

        save_file(reference, str(layout.reload_reference))  # last: the staging is complete once it exists
        logger.info("final model staged: %s (published once it reloads: jobs/release/reload.py)", partial)
    trainer.accelerator.wait_for_everyone()


SAMPLE_TOKENS = 64


def sample_logits(trainer: Any) -> dict[str, Any]:
    """The trained model's logits for the first training row (its first SAMPLE_TOKENS tokens, prompt and
    answer), taken in memory before the trainer is freed: what the staged copy must reproduce."""
    import torch

    from jobs.release.reload import sample_forward

    row = trainer.train_dataset[0]
    ids = row.get("input_ids") or [*row["prompt_ids"], *(row.get("chosen_ids") or row.get("completion_ids") or [])]
    input_ids = torch.tensor([ids[:SAMPLE_TOKENS]])
    logits = sample_forward(trainer.model, input_ids, trainer.accelerator.device)
    return {"input_ids": input_ids, "logits": logits.contiguous()}


def stops_on_closing_token(directory: Path, run: ResolvedRun, stop: dict[str, Any] | None) -> None:
    """The published generation config ends generation on the chat template's closing token, where the
    model's end-of-sequence ids lack it (preflight found it: jobs/data/chat.py). An adapter's directory
    gets the base model's generation config with the token added."""
    if not stop or stop["in_eos_ids"]:
        return
    from transformers import GenerationConfig

    has_own = (directory / "generation_config.json").is_file()
    source = directory if has_own else Path(str(run.model["model_name_or_path"]))
    try:
        config = GenerationConfig.from_pretrained(source)
    except OSError:  # the base model has none
        config = GenerationConfig()
    eos = config.eos_token_id
    ids = list(eos) if isinstance(eos, list) else ([eos] if eos is not None else [])
    config.eos_token_id = [*ids, stop["id"]]
    config.save_pretrained(directory)
    logger.info("generation_config.json: end-of-sequence ids %s (added the chat template's %r)",
                config.eos_token_id, stop["token"])  # fmt: skip


def _effective_config(trainer: Any, run: ResolvedRun, loss_mask: dict[str, Any] | None) -> dict[str, Any]:
    """What was set, and what TRL ran with after the job's defaults: every training and model field, and
    the loss mask preflight built (TRL itself is given assistant_only_loss=False: jobs/config/defaults.py)."""
    effective = run.config.effective()
    effective["loss_mask"] = loss_mask
    resolved = json.loads(trainer.args.to_json_string())
    for name, value in resolved.items():  # transformers hides every *_token field; only the secret ones stay hidden
        if value == f"<{name.upper()}>":
            resolved[name] = getattr(trainer.args, name)
    effective["training_resolved"] = redact(resolved)
    model_resolved = dataclasses.asdict(trainer.model_args)
    effective["model_resolved"] = redact(json.loads(json.dumps(model_resolved, default=str)))
    return effective


def _recorded_report(path: Path) -> dict[str, Any] | None:
    """The validation report preflight wrote; None (with a warning) if it went missing during training: the
    model is published all the same, its manifest without the data's provenance."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        logger.warning("the final manifest names no data: %s does not read (%s)", path, error)
        return None


def manifest(run: ResolvedRun, report: dict[str, Any] | None, global_step: int) -> dict[str, Any]:
    """What produced the model: the code, the packages, the machine, and the data as preflight recorded it
    (the layout `TRAIN_DATA_PATH` resolved to, or TRAIN_DATA_MIX's sources with what each gave; every source
    file with its sha256, and the mixture entry it belongs to; the prepared files)."""
    report = report or {"files": []}
    keys = ("role", "path", "sha256", "records", "format", "source")
    sources = [{key: file.get(key) for key in keys} for file in report["files"]]
    return {
        "run_id": run.config.run_id,
        "git_revision": git_revision(),
        "python": platform.python_version(),
        "host": platform.node(),
        "packages": package_versions(),
        "data": {
            "layout": report.get("layout"),
            "sources": sources,
            "prepared": report.get("prepared", {}),
            "mixture": report.get("mixture"),
        },
        "method": run.method,
        "world_size": run.processes,
        "global_step": global_step,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def package_versions() -> dict[str, str | None]:
    versions: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision() -> str | None:
    """The source revision: GIT_REVISION (set when the image is built) or the checkout's HEAD."""
    if os.environ.get("GIT_REVISION"):
        return os.environ["GIT_REVISION"]
    try:
        result = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return result.stdout.strip() or None


def discard(path: Path) -> None:
    shutil.rmtree(path, ignore_errors=True)


def _write_json(path: Path, value: Any) -> None:
    path.write_text(json.dumps(value, indent=2, ensure_ascii=False, default=str) + "\n", encoding="utf-8")
