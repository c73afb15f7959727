"""SFT throughput: padded batches against padding-free batches (the job's default) and BFD packing.

All three train the same model for one epoch over the same records (the bundled Alpaca demo, 999
records, and the GSM8K chat sample, 449), so all see the same tokens.
  - padded: TRAIN_PADDING_FREE=false, each batch padded to its longest record;
  - padding_free: the default (jobs/train/batching.py): a step's records end to end in one row, the same
    steps as padded batches without the padding;
  - packed_bfd: TRAIN_PACKING=true, records packed best-fit-decreasing into rows of max_length tokens,
    as many rows a step as hold the padded run's tokens a step, so about as many optimizer steps.
In the last two the job runs attention per record (jobs/train/attention.py), so no record attends to another
and none pays for the row's length. Reported per dataset and repetition: tokens per second (TRL's
`num_tokens` over `train_runtime`), and the eval loss after the epoch on the same held-out records (the
job's 10 % split), whose spread over the repetitions (the seed differs) is the bar for "the same loss".
"""

from __future__ import annotations

import json
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from bench.common import ROOT
from bench.training import job_env, model_path

DATASETS = {
    "alpaca": ROOT / "tests" / "data" / "realdata" / "llamafactory_alpaca_en_demo.json",
    "gsm8k": ROOT / "tests" / "data" / "realdata" / "foundry_gsm8k_chat_train.jsonl",
}
MAX_LENGTH = 1024
BATCH_OF_RECORDS = {"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "8"}  # records a step, padded or padding-free
REPEATS = 2


def one_epoch(model: str, data: Path, settings: dict[str, str], seed: int) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-packing-"))
    try:
        env = job_env(model, "sft", work, 0, settings)
        env.pop("TRAIN_MAX_STEPS")
        env |= {"TRAIN_DATA_PATH": str(data), "TRAIN_NUM_TRAIN_EPOCHS": "1", "TRAIN_SAVE_STRATEGY": "no",
                "TRAIN_EVAL_STRATEGY": "epoch", "TRAIN_DROP_INVALID": "true", "TRAIN_MAX_INVALID_FRACTION": "0.5",
                "TRAIN_SEED": str(seed), "TRAIN_MAX_LENGTH": str(MAX_LENGTH)}  # fmt: skip
        log = work / "job.log"
        with log.open("w") as out:
            code = subprocess.run([sys.executable, "entrypoint.py"], cwd=ROOT, env=env, stdout=out, stderr=out,
                                  check=False).returncode  # fmt: skip
        if code != 0:
            raise RuntimeError(f"the job exited {code}: {log.read_text()[-2000:]}")
        history = json.loads((work / "final" / "log_history.json").read_text())
        tokens = max(entry.get("num_tokens", 0) for entry in history)
        runtime = next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
        steps = max(entry.get("step", 0) for entry in history)
        eval_loss = next(entry["eval_loss"] for entry in reversed(history) if "eval_loss" in entry)
        return {"tokens_per_second": tokens / runtime, "num_tokens": tokens, "steps": steps, "eval_loss": eval_loss}
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(quick: bool = False, model: str = "tiny") -> dict[str, Any]:
    model_path(model)
    results: dict[str, Any] = {"model": model, "repeats": REPEATS}
    for name, data in DATASETS.items():
        runs: dict[str, list[dict[str, Any]]] = {"padded": [], "padding_free": [], "packed_bfd": []}
        rows = 0
        for seed in range(REPEATS):  # alternating
            runs["padded"].append(one_epoch(model, data, {**BATCH_OF_RECORDS, "TRAIN_PADDING_FREE": "false"}, seed))
            runs["padding_free"].append(one_epoch(model, data, BATCH_OF_RECORDS, seed))
            if not rows:  # as many rows a step as hold the first padded run's tokens a step
                first = runs["padded"][0]
                rows = max(1, round(first["num_tokens"] / first["steps"] / MAX_LENGTH))
            packed_settings = {"TRAIN_PACKING": "true", "TRAIN_PACKING_STRATEGY": "bfd",
                               "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": str(rows)}  # fmt: skip
            runs["packed_bfd"].append(one_epoch(model, data, packed_settings, seed))
        speed = {mode: statistics.median(r["tokens_per_second"] for r in runs[mode]) for mode in runs}
        results[name] = {
            "runs": runs,
            "speedup": {mode: round(speed[mode] / speed["padded"], 2) for mode in ("padding_free", "packed_bfd")},
            "packed_rows_per_step": rows,
            "eval_loss": {mode: [round(r["eval_loss"], 4) for r in runs[mode]] for mode in runs},
        }
    return results


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
