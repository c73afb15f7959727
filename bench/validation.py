"""Benchmark: data validation against an orjson parse-only loop over the same files, in the same run.

    make bench            # or: .venv/bin/python -m bench.run --only validation

Inputs: DPO files of 20k and 200k records (prompt/chosen/rejected, texts from the real Orca DPO sample,
~3 KB a record), generated once under .cache/bench/. Each measurement runs in a fresh process and is
the best of 3. Validation runs as the job runs it: a large .jsonl file in parallel shards, one worker per
CPU. Reported (goals from the data-contract issue):
  - marginal wall time per record, (t_200k - t_20k) / 180k, against parse-only: goal <= 2x; and the
    same in CPU time of all processes (the cost per core, whatever the core count)
  - the whole 200k run against parse-only: goal <= 3x
  - both against two parse-only loops: the plain one (`open(path, "rb")`: the file system's 4 KiB blocks,
    a read call for nearly every 3 KB line) and the same loop reading 1 MiB blocks, as the job's reader
    does. The first is the issue's baseline; the second is the cost of parsing alone with equal reading,
    so that a faster reader is not mistaken for cheaper checks.
  - peak RSS growth per record (200k against 20k), all key tables and length statistics together: goal
    <= 100 bytes; for the process and for its largest shard worker; and what each table holds per record
Results are printed and written to output/bench/validation.json. Timings are never asserted in tests.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import textwrap
from dataclasses import dataclass
from pathlib import Path

import orjson

from bench.common import ROOT, publish
from dev.testing import REALDATA
from jobs.data.shards import worker_count

CACHE = ROOT / ".cache" / "bench"
SOURCE = REALDATA / "foundry_orca_dpo_pairs_validation.jsonl"
SIZES = (20_000, 200_000)
REPEATS = 3

PARSE_ONLY = """
import orjson, sys
with open(sys.argv[1], "rb") as handle:
    for line in handle:
        orjson.loads(line)
"""
PARSE_ONLY_SAME_READER = """
import orjson, sys
from jobs.data.readers import READ_BUFFER
with open(sys.argv[1], "rb", buffering=READ_BUFFER) as handle:
    for line in handle:
        orjson.loads(line)
"""
# The job keeps its prepared files: deleting them (600 MB) is done after the timing, in the same process.
VALIDATE = """
import sys
from pathlib import Path
from jobs.data.validate import validate_dataset
from jobs.preflight.data import data_policy
policy = data_policy("dpo", eval_split=float(sys.argv[2]))
result = validate_dataset(Path(sys.argv[1]), None, policy, Path(sys.argv[3]))
assert result.refused is None, result.refused
print("tables", *(f"{k}={v}" for k, v in result.table_bytes.items()))
"""
REMOVE_PREPARED = """
import shutil
shutil.rmtree(sys.argv[3])
"""
# Wraps a snippet: wall time and CPU time (the process and its shard workers) of the snippet alone, imports
# excluded; the peak RSS of the process and of its largest worker. `after` runs once they are printed.
HARNESS = """
import resource, time
def cpu():
    return sum(u.ru_utime + u.ru_stime for u in map(resource.getrusage, (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
start, start_cpu = time.perf_counter(), cpu()
{body}
elapsed, cpu_seconds = time.perf_counter() - start, cpu() - start_cpu
print(elapsed, cpu_seconds, *(resource.getrusage(who).ru_maxrss * 1024 for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)))
{after}
"""


def dataset(n: int) -> Path:
    path = CACHE / f"dpo_{n}.jsonl"
    if path.exists():
        return path
    CACHE.mkdir(parents=True, exist_ok=True)
    pairs = []
    for line in SOURCE.read_bytes().splitlines():
        record = orjson.loads(line)
        pairs.append((record["input"]["messages"][-1]["content"], record["preferred_output"][0]["content"],
                      record["non_preferred_output"][0]["content"]))  # fmt: skip
    partial = path.with_suffix(".partial")
    with open(partial, "wb") as handle:
        for i in range(n):
            prompt, chosen, rejected = pairs[i % len(pairs)]
            handle.write(orjson.dumps({"prompt": f"[{i}] {prompt}", "chosen": chosen, "rejected": rejected}) + b"\n")
    partial.replace(path)
    return path


@dataclass
class Run:
    seconds: float  # wall, best of REPEATS
    cpu_seconds: float  # of the process and its workers, in that best run
    rss: int  # peak of the process, largest over the runs
    worker_rss: int  # peak of its largest shard worker (0: none)
    tables: dict[str, int]  # what the snippet reported on a `tables k=v ...` line (key-table bytes)


def measure(snippet: str, *args: str, after: str = "") -> Run:
    """The snippet run REPEATS times, each in a fresh process."""
    code = HARNESS.format(body=textwrap.dedent(snippet), after=textwrap.dedent(after))
    runs = []
    tables: dict[str, int] = {}
    for _ in range(REPEATS):
        out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True)
        seconds, cpu_seconds, rss, worker_rss = out.stdout.split()[-4:]
        runs.append((float(seconds), float(cpu_seconds), int(rss), int(worker_rss)))
        for line in out.stdout.splitlines():
            if line.startswith("tables "):
                tables = {k: int(v) for k, v in (item.split("=") for item in line.split()[1:])}
    best = min(runs)
    return Run(best[0], best[1], max(r[2] for r in runs), max(r[3] for r in runs), tables)


def run(quick: bool = False) -> dict[str, object]:
    """Both splits; `quick` is the same (it takes about two minutes)."""
    files = {n: dataset(n) for n in SIZES}
    results: dict[str, object] = {"records_per_file": list(SIZES), "bytes": {n: files[n].stat().st_size for n in SIZES}}
    for split in (0.0, 0.1):
        parse = {n: measure(PARSE_ONLY, str(files[n])) for n in SIZES}
        parse_same_reader = {n: measure(PARSE_ONLY_SAME_READER, str(files[n])) for n in SIZES}
        with tempfile.TemporaryDirectory() as scratch:
            out = str(Path(scratch) / "prepared")
            ours = {n: measure(VALIDATE, str(files[n]), str(split), out, after=REMOVE_PREPARED) for n in SIZES}
        results[f"eval_split={split}"] = {
            **_figures(parse, ours),
            "same_reader": {
                key: value
                for key, value in _figures(parse_same_reader, ours).items()
                if key.startswith(("parse_only", "marginal", "whole_run"))
            },
        }
    return results


def _figures(parse: dict[int, Run], ours: dict[int, Run]) -> dict[str, object]:
    small, large = SIZES

    def marginal(runs: dict[int, Run], field: str) -> float:
        return (getattr(runs[large], field) - getattr(runs[small], field)) / (large - small)

    def growth(field: str) -> int:  # peak RSS growth per record, 200k against 20k
        return round((getattr(ours[large], field) - getattr(ours[small], field)) / (large - small))

    return {
        "parse_only_seconds": {n: round(parse[n].seconds, 3) for n in SIZES},
        "validate_seconds": {n: round(ours[n].seconds, 3) for n in SIZES},
        "validate_cpu_seconds": {n: round(ours[n].cpu_seconds, 3) for n in SIZES},
        "shard_workers": worker_count(),
        "marginal_us_per_record": {
            "parse_only": round(marginal(parse, "seconds") * 1e6, 2),
            "validate": round(marginal(ours, "seconds") * 1e6, 2),
            "validate_cpu": round(marginal(ours, "cpu_seconds") * 1e6, 2),
        },
        # Goals: marginal wall time <= 2x parse-only, the whole run <= 3x. CPU time shows the cost per core.
        "marginal_ratio": round(marginal(ours, "seconds") / marginal(parse, "seconds"), 2),
        "whole_run_ratio_200k": round(ours[large].seconds / parse[large].seconds, 2),
        "marginal_cpu_ratio": round(marginal(ours, "cpu_seconds") / marginal(parse, "cpu_seconds"), 2),
        "validate_peak_rss_mib": {n: round(ours[n].rss / 2**20) for n in SIZES},
        "worker_peak_rss_mib": {n: round(ours[n].worker_rss / 2**20) for n in SIZES},
        # Goal: at most 100 bytes a record beyond a fixed base, key tables and lengths together.
        "peak_rss_growth_bytes_per_record": growth("rss"),
        "worker_peak_rss_growth_bytes_per_record": growth("worker_rss"),
        "table_bytes_per_record": {name: round(size / large, 1) for name, size in ours[large].tables.items()},
    }


if __name__ == "__main__":
    publish("validation", run())
