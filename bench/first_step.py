"""Time to the first training step on 200k DPO records: the job against the bare TRL script, in one run.

    .venv/bin/python -m bench.run --only first_step

Two datasets of 200k records (20k with --quick), made once under .cache/bench/ from the real Orca DPO
sample's texts cut to 300 characters: plain prompt/chosen/rejected strings, and the same as conversations
whose prompt has a system turn. The job runs as users run it (validation, the template check of every
conversational record, the exporter), one optimizer step on the demo model; the bare script
(bench/bare_trl.py) trains the records the job validated with the settings it resolved. Job and bare
alternate, REPEATS times each, every run a fresh process with a fresh datasets cache. Reported: the wall
time of each run (process start to exit; one step, the final save), medians with their spread, and the
ratio job / bare (goal <= 1.10). Each 200k run tokenises the whole corpus (6-10 minutes on 2 CPUs), so the
part runs one repetition: about 30 minutes. Timings are never asserted in tests.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
from pathlib import Path
from typing import Any

import orjson

from bench.common import ROOT
from bench.training import Run, resolved, run_bare, run_job
from dev.testing import REALDATA

CACHE = ROOT / ".cache" / "bench"
SOURCE = REALDATA / "foundry_orca_dpo_pairs_validation.jsonl"
SIZE, QUICK_SIZE = 200_000, 20_000
REPEATS = 1
CHARS = 300
SYSTEM = "You are a helpful assistant. Answer carefully."
KINDS = ("plain", "conversational_system")


def _texts() -> list[tuple[str, str, str]]:
    texts = []
    for line in SOURCE.read_bytes().splitlines():
        record = orjson.loads(line)
        texts.append((record["input"]["messages"][-1]["content"][:CHARS],
                      record["preferred_output"][0]["content"][:CHARS],
                      record["non_preferred_output"][0]["content"][:CHARS]))  # fmt: skip
    return texts


def dataset(kind: str, n: int) -> Path:
    """`n` DPO records of `kind`, each prompt made unique by its number (no duplicates to report)."""
    path = CACHE / f"first_step_{kind}_{n}.jsonl"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    texts = _texts()
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as handle:
        for i in range(n):
            prompt, chosen, rejected = texts[i % len(texts)]
            prompt = f"[{i}] {prompt}"
            if kind == "plain":
                record: dict[str, Any] = {"prompt": prompt, "chosen": chosen, "rejected": rejected}
            else:
                record = {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt}],
                          "chosen": [{"role": "assistant", "content": chosen}],
                          "rejected": [{"role": "assistant", "content": rejected}]}  # fmt: skip
            handle.write(orjson.dumps(record) + b"\n")
    partial.replace(path)
    return path


def _median_spread(runs: list[Run]) -> dict[str, float]:
    walls = [run.wall for run in runs]
    return {"median": round(statistics.median(walls), 1), "min": round(min(walls), 1), "max": round(max(walls), 1)}


def compare(kind: str, n: int) -> dict[str, Any]:
    extra = {"TRAIN_DATA_PATH": str(dataset(kind, n)), "TRAIN_EVAL_SPLIT": "0"}
    work = Path(tempfile.mkdtemp(prefix=f"bench-first-step-{kind}-"))
    try:
        jobs = [run_job("tiny", "dpo", 1, work, extra, keep=work / "resolved")]
        settings, data = resolved(work / "resolved", work)
        bares = [run_bare(settings, data, 1, work)]
        for _ in range(REPEATS - 1):  # alternating, so that drift in the machine's speed hits both alike
            jobs.append(run_job("tiny", "dpo", 1, work, extra))
            bares.append(run_bare(settings, data, 1, work))
        job, bare = _median_spread(jobs), _median_spread(bares)
        return {
            "records": n, "job_seconds": job, "bare_seconds": bare,
            "ratio": {"median": round(job["median"] / bare["median"], 3),
                      "range": [round(job["min"] / bare["max"], 3), round(job["max"] / bare["min"], 3)],
                      "goal": 1.10},
        }  # fmt: skip
    finally:
        shutil.rmtree(work, ignore_errors=True)


def run(quick: bool = False) -> dict[str, Any]:
    n = QUICK_SIZE if quick else SIZE
    return {"repeats": REPEATS, **{kind: compare(kind, n) for kind in KINDS}}
