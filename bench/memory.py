"""Peak RSS of DPO against SFT at equal work, on the 76M model (CPU, float32).

DPO+LoRA scores each pair's chosen and rejected sequences with the policy, and again with the adapter
disabled for the reference (no second model). SFT+LoRA at equal work trains on the same sequences,
prompt+chosen and prompt+rejected as two records, with twice DPO's batch size, so both pass the same
sequences through the model per step. Also measured: full-fine-tune DPO with its frozen reference copy,
and the same with the reference log-probs precomputed before training (TRAIN_PRECOMPUTE_REF_LOG_PROBS).
Data: the first PAIRS_USED of the bundled Orca DPO pairs (real lengths, up to max_length 512 tokens).
"""

from __future__ import annotations

import json
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.training import job_env, model_path, timed

PAIRS = ROOT / "tests" / "data" / "realdata" / "foundry_orca_dpo_pairs_validation.jsonl"
# Pairs used, from the top of the file: precomputing the reference log-probs scores every one of them
# before training (all 283 took 3-8 minutes here), while the peak comes from the few batches trained on.
PAIRS_USED = 64
STEPS = 2  # the peak comes with the second step: the first one's activations, gradients and optimizer state
REPEATS = 1  # the job's own estimate agrees with it to a few per cent (6.17 GB against 6.30 GB measured)
DPO_BATCH = 2
COMMON = {"TRAIN_MAX_LENGTH": "512", "TRAIN_MEMORY_CHECK": "warn", "TRAIN_SAVE_STRATEGY": "no",
          "TRAIN_EVAL_SPLIT": "0", "TRAIN_DROP_INVALID": "true", "TRAIN_MAX_INVALID_FRACTION": "0.5"}  # fmt: skip
RUNS = {  # name: (method, data, settings)
    "sft_lora_equal_work": ("sft", "sft", {"TRAIN_USE_PEFT": "true", "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": str(2 * DPO_BATCH)}),
    "dpo_lora": ("dpo", "dpo", {"TRAIN_USE_PEFT": "true", "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": str(DPO_BATCH)}),
    "dpo_full": ("dpo", "dpo", {"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": str(DPO_BATCH)}),
    "dpo_full_precomputed_reference": ("dpo", "dpo", {"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": str(DPO_BATCH),
                                                      "TRAIN_PRECOMPUTE_REF_LOG_PROBS": "true"}),
}  # fmt: skip


def pairs(work: Path) -> Path:
    path = work / "dpo_pairs.jsonl"
    path.write_text("".join(PAIRS.read_text().splitlines(keepends=True)[:PAIRS_USED]))
    return path


def sft_records(pairs: Path, work: Path) -> Path:
    """The pairs as SFT records: prompt+chosen and prompt+rejected, each a prompt-completion conversation."""
    path = work / "sft_equal_work.jsonl"
    with path.open("w") as out:
        for line in pairs.read_text().splitlines():
            record = json.loads(line)
            prompt = record["input"]["messages"]
            for side in ("preferred_output", "non_preferred_output"):
                out.write(json.dumps({"prompt": prompt, "completion": record[side]}) + "\n")
    return path


def run(quick: bool = False) -> dict[str, Any]:
    model_path("76m")
    work = Path(tempfile.mkdtemp(prefix="bench-memory-"))
    try:
        dpo = pairs(work)
        data = {"sft": sft_records(dpo, work), "dpo": dpo}
        peaks: dict[str, list[float]] = {name: [] for name in RUNS}
        seconds: dict[str, float] = {}
        for _ in range(1 if quick else REPEATS):
            for name, (method, source, settings) in RUNS.items():
                output = work / name
                env = job_env("76m", method, output, 2 if quick else STEPS, {**COMMON, **settings})
                env["TRAIN_DATA_PATH"] = str(data[source])
                done = timed([sys.executable, "entrypoint.py"], env, work / f"{name}.log")
                peaks[name].append(done.rss / 2**30)
                seconds[name] = round(done.wall)
                shutil.rmtree(output, ignore_errors=True)
        median = {name: statistics.median(values) for name, values in peaks.items()}
        return {
            "steps": STEPS, "dpo_batch": DPO_BATCH, "max_length": 512,
            "peak_rss_gib": {name: [round(v, 3) for v in values] for name, values in peaks.items()},
            "wall_seconds": seconds,
            # goal: <= 1.10
            "dpo_lora_over_sft_lora": round(median["dpo_lora"] / median["sft_lora_equal_work"], 3),
            "dpo_full_over_dpo_lora": round(median["dpo_full"] / median["dpo_lora"], 3),
            "precomputed_reference_saves_gib": round(median["dpo_full"] - median["dpo_full_precomputed_reference"], 3),
        }  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(json.dumps(run("--quick" in sys.argv), indent=2))
