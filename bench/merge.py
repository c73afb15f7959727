"""Benchmark: merging a LoRA adapter into the 76M model (`entrypoint.py merge OUTPUT_DIR`, the code
TRAIN_MERGE_ADAPTER runs after training): wall time and peak resident memory against the merge's estimate
(jobs/estimate/merge.py), for the base as built (float32, one file) and a bfloat16 copy in shards.

    .venv/bin/python -m bench.run --only merge

The adapter is LoRA of the job's default rank on every linear layer, initialised at random (a trained
adapter merges the same way: the merge's cost does not depend on its values). Each merge is a fresh
process: load the base and the adapter, compare on the fixed prompts, merge, write, reload from disk, compare
again, rename. Peak memory is wait4's maximum resident set. Timings are never asserted in tests.
"""

from __future__ import annotations

import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.training import job_env, model_path, timed
from jobs.estimate.merge import estimate_merge

REPEATS, QUICK_REPEATS = 3, 1
LORA_RANK = 16  # TRL's ModelConfig default, which the job keeps


def build_run(base: Path, output: Path) -> None:
    """A finished LoRA run's output directory: final/ with a random adapter on `base` and its tokenizer."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    config = LoraConfig(r=LORA_RANK, lora_alpha=32, target_modules="all-linear", init_lora_weights=False)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(base), config)
    model.save_pretrained(str(output / "final"))
    AutoTokenizer.from_pretrained(base).save_pretrained(output / "final")


def bf16_shards(base: Path, target: Path) -> Path:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    AutoModelForCausalLM.from_pretrained(base, dtype=torch.bfloat16).save_pretrained(target, max_shard_size="50MB")
    AutoTokenizer.from_pretrained(base).save_pretrained(target)
    return target


def measure(base: Path, work: Path, repeats: int) -> dict[str, Any]:
    output = work / f"out-{base.name}"
    build_run(base, output)
    adapter = sum(path.stat().st_size for path in (output / "final").glob("adapter_model.*"))
    estimate = estimate_merge(base, adapter)
    assert estimate is not None
    runs = []
    for _ in range(repeats):
        env = job_env("76m", "sft", output, 0, {"TRAIN_MODEL_NAME_OR_PATH": str(base)})
        runs.append(timed([sys.executable, "entrypoint.py", "merge", str(output)], env, work / "merge.log"))
        shutil.rmtree(output / "final" / "merged")
        for kept in (output / "final").glob("merged.*"):
            shutil.rmtree(kept)
    peak = max(run.rss for run in runs)
    return {
        "weights_bytes": estimate.weights, "adapter_bytes": adapter, "shards": len(list(base.glob("*.safetensors"))),
        "seconds": round(statistics.median(run.wall for run in runs), 2),
        "seconds_range": [round(min(r.wall for r in runs), 2), round(max(r.wall for r in runs), 2)],
        "peak_rss_bytes": peak, "estimate_bytes": estimate.total, "peak_over_estimate": round(peak / estimate.total, 3),
    }  # fmt: skip


def run(quick: bool) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-merge-"))
    try:
        base = model_path("76m")
        results = {"float32": measure(base, work, QUICK_REPEATS if quick else REPEATS)}
        results["bfloat16"] = measure(bf16_shards(base, work / "base-bf16"), work, QUICK_REPEATS if quick else REPEATS)
        return results
    finally:
        shutil.rmtree(work, ignore_errors=True)
