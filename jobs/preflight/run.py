"""Preflight: everything that can be checked before a model loads or a GPU is touched, cheapest first.

The output volume first (writable: jobs/preflight/checks.py), then the model directory, the memory
estimate (jobs/estimate/memory.py) and the disk room, then every data record (jobs/preflight/data.py),
then the checksums of the checkpoint a resume would use (jobs/integrity.py) and the resume identity
(jobs/preflight/identity.py). Returns the run with what preflight found.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from jobs.config.resolved import ResolvedRun
from jobs.estimate.loading import loading_threshold
from jobs.estimate.memory import check_memory
from jobs.estimate.merge import check_merge_memory, planned_adapter_bytes
from jobs.integrity import set_aside_damaged
from jobs.preflight.checks import check_disk_room, check_model_dir, check_report_to
from jobs.preflight.data import validate_data
from jobs.preflight.identity import check_resume


def run_preflight(run: ResolvedRun, *, for_training: bool) -> ResolvedRun:
    """The model and data checks, in order of cost (after `check_output_dir`); the run as preflight found it:
    with or without evaluation data, with its memory estimate."""
    main = run.config.topology.is_main_machine  # machine 0 alone changes the shared output volume
    model_dir = Path(str(run.config.model.get("model_name_or_path")))
    if for_training:
        check_model_dir(run.model.get("model_name_or_path"))
        run = dataclasses.replace(run, memory=check_memory(run))
        if run.job.merge_adapter and main:  # the merge runs on machine 0's CPU once training is over
            lora_rank = int(run.model_setting("lora_r"))
            check_merge_memory(model_dir, planned_adapter_bytes(model_dir, lora_rank), run.job.memory_check)
        check_disk_room(run)
        check_report_to(run)
        if main:
            run.layout.set_aside_incomplete()
    # The template check and token counts need the tokenizer (and torch): training has a model; validate only
    # when one is named.
    report = validate_data(run, with_model=bool(run.config.model.get("model_name_or_path")))
    if for_training and main:
        if run.job.resume != "never":  # a fresh start sets every checkpoint aside unread
            set_aside_damaged(run.layout)
        check_resume(run, report)
    run = run.with_evaluation("eval" in report["prepared"])
    records = int(report["prepared"].get("train", {}).get("records", 0))
    return run.with_loading(loading_threshold(run.job.loading_timeout, model_dir, records))
