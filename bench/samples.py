"""Benchmark: what the samples (TRAIN_SAMPLES, jobs/train/guards/samples.py) cost, on the 76M model at their
defaults (8 prompts, 64 new tokens).

    .venv/bin/python -m bench.run --only samples

One SFT job on the demo conversations (the 76M model, batches and max_length as in bench/training.py) of
STEPS optimizer steps, evaluated every EVAL_STEPS, with the samples on, and the same job with them off.
Reported: a round's seconds as the job measured them (each evaluation round's `generation_seconds` in
samples.jsonl; the final round reuses the last one's), which depend on how soon the answers end; the
most a round costs, the same batch from the published model generated to the limit (no sample stops,
FORCED_REPEATS times, in this process); the optimizer step's seconds (train_runtime / STEPS with the
samples off); that worst round in optimizer steps and as a share of the training between two evaluations
at the job's default cadence (every `eval_steps` = 100 steps, jobs/config/defaults.py; goal <= 0.05); and
at this benchmark's own cadence, the rounds' seconds over the train_runtime of the run that had them (both
from one run, so that another load on the machine moves them together; the two runs' train_runtime are
reported as they came).
"""

from __future__ import annotations

import json
import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

from bench.training import MODEL_SETTINGS, run_job
from jobs.config.defaults import EVAL_DEFAULTS
from jobs.config.settings import JobSettings
from jobs.layout import OutputLayout

STEPS, EVAL_STEPS = 60, 20
QUICK_STEPS, QUICK_EVAL_STEPS = 20, 10
GOAL = 0.05
FORCED_REPEATS = 3


def forced_round(final: Path, prompts: list[str], max_new_tokens: int) -> float:
    """Median seconds of a round in which no sample stops: the round's batch, left-padded, generated greedily
    to `max_new_tokens` by the published model."""
    import time

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(final, padding_side="left")
    model: Any = AutoModelForCausalLM.from_pretrained(final).eval()  # its generate() is typed for a protocol
    batch = tokenizer(prompts, add_special_tokens=False, padding=True, return_tensors="pt")
    seconds = []
    for _ in range(FORCED_REPEATS):
        started = time.monotonic()
        with torch.no_grad():
            model.generate(**batch, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens,
                           min_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id)  # fmt: skip
        seconds.append(time.monotonic() - started)
    return statistics.median(seconds)


def run(quick: bool) -> dict[str, Any]:
    steps, every = (QUICK_STEPS, QUICK_EVAL_STEPS) if quick else (STEPS, EVAL_STEPS)
    settings = {**MODEL_SETTINGS["76m"], "TRAIN_EVAL_STEPS": str(every), "TRAIN_SAVE_STRATEGY": "no"}
    work = Path(tempfile.mkdtemp(prefix="bench-samples-"))
    try:
        on = run_job("76m", "sft", steps, work, settings, keep=work / "on")
        lines = [json.loads(line) for line in OutputLayout(work / "on").samples.read_text().splitlines()]
        final_prompts = [line["prompt"] for line in lines if line["phase"] == "final"]
        worst = forced_round(work / "on" / "final", final_prompts, JobSettings.sample_max_new_tokens)
        off = run_job("76m", "sft", steps, work, {**settings, "TRAIN_SAMPLES": "0"})
    finally:
        shutil.rmtree(work, ignore_errors=True)
    rounds = [line["generation_seconds"] for line in lines if line["phase"] == "eval" and line["index"] == 0]
    round_seconds = statistics.median(rounds)
    step_seconds = off.runtime / steps
    default_every = int(EVAL_DEFAULTS["eval_steps"])
    return {
        "model": "76m", "method": "sft", "steps": steps, "eval_steps": every,
        "samples": JobSettings.samples, "max_new_tokens": JobSettings.sample_max_new_tokens,
        "tokens_generated": [line["tokens"] for line in lines if line["phase"] == "eval"][:8],
        "round_seconds": [round(s, 2) for s in rounds], "round_seconds_median": round(round_seconds, 2),
        "stopped": sum(line["stopped"] for line in lines if line["phase"] == "final"),
        "worst_round_seconds": round(worst, 2), "step_seconds": round(step_seconds, 3),
        "worst_round_in_steps": round(worst / step_seconds, 1), "default_eval_steps": default_every,
        "share_at_default_cadence": round(worst / (default_every * step_seconds), 4), "goal": GOAL,
        "runtime_on": round(on.runtime, 1), "runtime_off": round(off.runtime, 1),
        "share_at_this_cadence": round(sum(rounds) / on.runtime, 4),
    }  # fmt: skip
