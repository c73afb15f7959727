"""The job against the plainest TRL script that does the same training (bench/bare_trl.py).

For each model and method, the bare script trains with exactly the settings the job's first run
resolved, on the records that run validated. The two alternate, REPEATS times each, at SHORT and LONG
optimizer steps, each a whole fresh process (the datasets cache fresh too). Reported, as medians with
their min-max spread and as ratios ours / bare:

  - time to first step: the wall time of the SHORT run (goal <= 1.10);
  - steady-state step time: (runtime LONG - runtime SHORT) / (LONG - SHORT), per repetition (goal <= 1.02),
    where the runtime is the trainer's own train_runtime: the training loop with every callback, guard and
    checkpoint in it, without the process's start-up and exit, whose noise (about half a second) would
    otherwise swamp a few milliseconds a step; the same from wall times is reported beside it;
  - peak RSS of the process tree (wait4's maximum resident set).

The job runs as users run it: validation in the process, the exporter on (a free port, nobody scraping,
so it does not linger), checkpoints and evaluation on its defaults, which the bare script shares.
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import ROOT
from dev.testing import free_port

MODELS = {"tiny": ROOT / ".cache" / "demo-model", "76m": ROOT / ".cache" / "bench" / "model-76m",
          "150m": ROOT / ".cache" / "bench" / "model-150m"}  # fmt: skip
# (short, long) optimizer steps per model; `quick` runs shorter.
STEPS = {"tiny": (20, 2020), "76m": (20, 50)}
QUICK_STEPS = {"tiny": (20, 120), "76m": (10, 20)}
# The demo records are short (p95 23 tokens); the memory check sizes for max_length, which at 1,024 refuses
# the 76M model here (64 GB for DPO at batch 8), so it is set to what the data needs. Batches of 4 halve
# the 76M model's step (about 1 s at 8), which keeps `make bench` near 40 minutes.
MODEL_SETTINGS = {"tiny": {}, "76m": {"TRAIN_MAX_LENGTH": "128", "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "4"}}
METHODS = ("sft", "dpo", "kto")
# Like for like: SFT on padded batches, as the bare script trains (TRL's default). The job's own default,
# padding-free batches, is measured against padded ones in bench/packing.py.
METHOD_SETTINGS = {"sft": {"TRAIN_PADDING_FREE": "false"}, "dpo": {}, "kto": {}}
REPEATS = 3
DEMO_DATA = {"sft": "sft_messages.jsonl", "dpo": "dpo_pairs.jsonl", "kto": "kto_unpaired.jsonl"}


@dataclass
class Run:
    wall: float  # seconds, process start to exit
    rss: int  # peak resident bytes of the process (and its waited-for children)
    runtime: float = 0.0  # the trainer's train_runtime, seconds


def model_path(name: str) -> Path:
    path = MODELS[name]
    if not (path / "config.json").is_file():
        shape = "tiny" if name == "tiny" else name
        subprocess.run([sys.executable, "-m", "dev.demo", "model", str(path), "--shape", shape], cwd=ROOT, check=True)
    return path


def job_env(model: str, method: str, output: Path, steps: int, extra: dict[str, str]) -> dict[str, str]:
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": os.environ.get("HOME", "/tmp"),
        "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(output / "hf-datasets"),
        "TRAIN_METHOD": method, "TRAIN_MODEL_NAME_OR_PATH": str(model_path(model)),
        "TRAIN_DATA_PATH": str(ROOT / "dev" / "demo_data" / DEMO_DATA[method]), "TRAIN_EVAL_SPLIT": "0.1",
        "TRAIN_OUTPUT_DIR": str(output), "TRAIN_MAX_STEPS": str(steps), "TRAIN_LOGGING_STEPS": "10",
        "TRAIN_METRICS_PORT": str(free_port()), "TRAIN_METRICS_ADDR": "127.0.0.1", **extra,
    }  # fmt: skip


def timed(command: list[str], env: dict[str, str], log: Path) -> Run:
    """Wall time and peak RSS of one process, run to its end."""
    with log.open("w") as out:
        started = time.monotonic()
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.monotonic() - started
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} exited {process.returncode}; see {log}")
    return Run(wall, usage.ru_maxrss * 1024)


def run_job(model: str, method: str, steps: int, work: Path, extra: dict[str, str], *, keep: Path | None = None) -> Run:
    """One job run; its output is removed afterwards unless it goes to `keep`."""
    output = keep or Path(tempfile.mkdtemp(dir=work, prefix=f"job-{steps}-"))
    try:
        run = timed([sys.executable, "entrypoint.py"], job_env(model, method, output, steps, extra), work / "job.log")
        history = json.loads((output / "final" / "log_history.json").read_text())
        run.runtime = next(entry["train_runtime"] for entry in history if "train_runtime" in entry)
        return run
    finally:
        if keep is None:
            shutil.rmtree(output, ignore_errors=True)


def run_bare(settings: Path, data: Path, steps: int, work: Path) -> Run:
    output = Path(tempfile.mkdtemp(dir=work, prefix=f"bare-{steps}-"))
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_CACHE": str(output / "hf-datasets")}
    command = [sys.executable, "bench/bare_trl.py", str(settings), str(data), str(output), "--max-steps", str(steps)]
    try:
        run = timed(command, env, work / "bare.log")
        run.runtime = json.loads((work / "bare.log").read_text().splitlines()[-1])["train_runtime"]
        return run
    finally:
        shutil.rmtree(output, ignore_errors=True)


def resolved(output: Path, work: Path) -> tuple[Path, Path]:
    """The settings a job run resolved and the records it validated, for the bare script to reuse."""
    settings = json.loads((output / "final" / "effective_config.json").read_text())
    settings["training_resolved"].pop("max_steps", None)
    (work / "settings.json").write_text(json.dumps(settings))
    return work / "settings.json", output / "data"


def compare(model: str, method: str, quick: bool = False, extra: dict[str, str] | None = None) -> dict[str, Any]:
    short, long = (QUICK_STEPS if quick else STEPS)[model]
    extra = {**MODEL_SETTINGS[model], **METHOD_SETTINGS[method], **(extra or {})}
    work = Path(tempfile.mkdtemp(prefix=f"bench-{model}-{method}-"))
    try:
        runs: dict[str, list[tuple[Run, Run]]] = {"job": [], "bare": []}
        # The job's first run resolves the settings and records that the bare script then trains with.
        first = run_job(model, method, short, work, extra, keep=work / "resolved")
        settings, data = resolved(work / "resolved", work)
        for repetition in range(REPEATS):  # alternating, so that drift in the machine's speed hits both alike
            job_short = first if repetition == 0 else run_job(model, method, short, work, extra)
            bare_short = run_bare(settings, data, short, work)
            job_long, bare_long = run_job(model, method, long, work, extra), run_bare(settings, data, long, work)
            runs["job"].append((job_short, job_long))
            runs["bare"].append((bare_short, bare_long))
        return summarize(runs, short, long)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _median_spread(values: list[float], digits: int = 3) -> dict[str, Any]:
    return {"median": round(statistics.median(values), digits), "min": round(min(values), digits),
            "max": round(max(values), digits)}  # fmt: skip


def summarize(runs: dict[str, list[tuple[Run, Run]]], short: int, long: int) -> dict[str, Any]:
    figures: dict[str, Any] = {"steps": [short, long], "repeats": REPEATS}
    for who, pairs in runs.items():
        figures[who] = {
            "first_step_wall_seconds": _median_spread([s.wall for s, _ in pairs]),
            "step_seconds": _median_spread([(lg.runtime - s.runtime) / (long - short) for s, lg in pairs], 4),
            "step_seconds_from_wall": _median_spread([(lg.wall - s.wall) / (long - short) for s, lg in pairs], 4),
            "peak_rss_mib": _median_spread([max(s.rss, lg.rss) / 2**20 for s, lg in pairs], 0),
        }
    for name, goal in (("first_step_wall_seconds", 1.10), ("step_seconds", 1.02), ("peak_rss_mib", None)):
        ours, bare = figures["job"][name], figures["bare"][name]
        figures[f"ratio_{name}"] = {
            "median": round(ours["median"] / bare["median"], 3),
            # the ratio's range over this machine's noise: our worst against their best, and the reverse
            "range": [round(ours["min"] / bare["max"], 3), round(ours["max"] / bare["min"], 3)],
            "goal": goal,
        }
    return figures


def run(quick: bool = False) -> dict[str, Any]:
    return {model: {method: compare(model, method, quick) for method in METHODS} for model in STEPS}


if __name__ == "__main__":
    print(json.dumps(run(quick="--quick" in sys.argv), indent=2))
