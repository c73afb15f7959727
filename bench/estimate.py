"""The memory estimate against the measured peak: SFT and DPO, full fine-tune and LoRA, on Llama-shaped
models of ~76M and ~150M parameters (CPU, float32), two optimizer steps each at batch 2 and 512 tokens.

The job logs both figures at the end of training: the estimate preflight made (its model-dependent part)
and the peak resident memory above what the process held before the model loaded. Reported: their ratio
per run (goal: within 0.8-1.2 for every run, with the same constants for every size and method).

    .venv/bin/python -m bench.run --only estimate
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.training import job_env, model_path, timed

DATA = {"sft": "foundry_gsm8k_chat_train.jsonl", "dpo": "foundry_orca_dpo_pairs_validation.jsonl"}
RUNS = {"sft-full": ("sft", False), "sft-lora": ("sft", True), "dpo-full": ("dpo", False), "dpo-lora": ("dpo", True)}
SETTINGS = {"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "2", "TRAIN_MAX_LENGTH": "512", "TRAIN_SAVE_STRATEGY": "no",
            "TRAIN_LOGGING_STEPS": "1", "TRAIN_EVAL_SPLIT": "0", "TRAIN_LOG_FORMAT": "json"}  # fmt: skip


def figures(log: Path) -> dict[str, float]:
    """The end-of-training memory line of a job's JSON log."""
    for line in log.read_text().splitlines():
        if line.startswith("{") and '"memory_peak_bytes"' in line:
            entry = json.loads(line)
            return {
                "estimate_gib": entry["memory_estimate_bytes"] / 2**30,
                "peak_gib": entry["memory_peak_bytes"] / 2**30,
            }
    raise RuntimeError(f"{log} has no memory line")


def run(quick: bool = False) -> dict[str, Any]:
    shapes = ("76m",) if quick else ("76m", "150m")
    work = Path(tempfile.mkdtemp(prefix="bench-estimate-"))
    results: dict[str, Any] = {}
    try:
        for shape in shapes:
            model_path(shape)
            for name, (method, lora) in RUNS.items():
                output = work / f"{shape}-{name}"
                env = job_env(shape, method, output, 2, {**SETTINGS, "TRAIN_USE_PEFT": str(lora).lower()})
                env["TRAIN_DATA_PATH"] = str(ROOT / "tests" / "data" / "realdata" / DATA[method])
                log = work / f"{shape}-{name}.log"
                timed([sys.executable, "entrypoint.py"], env, log)
                found = figures(log)
                results[f"{shape} {name}"] = {key: round(value, 3) for key, value in found.items()} | {
                    "ratio": round(found["estimate_gib"] / found["peak_gib"], 3)  # goal: 0.8-1.2
                }
                shutil.rmtree(output, ignore_errors=True)
        ratios = [entry["ratio"] for entry in results.values()]
        return {"runs": results, "ratio_min": min(ratios), "ratio_max": max(ratios)}
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
