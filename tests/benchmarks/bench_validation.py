"""Benchmark: data validation against an orjson parse-only loop over the same files, in the same run.

    make bench            # or: .venv/bin/python -m tests.benchmarks.bench_validation

Inputs: DPO files of 20k and 200k records (prompt/chosen/rejected, texts from the real Orca DPO sample,
~3 KB a record), generated once under .cache/bench/. Each measurement runs in a fresh process and is
the best of 3. Reported (goals from the data-contract issue):
  - marginal cost per record, (t_200k - t_20k) / 180k, against parse-only: goal <= 2x
  - the whole 200k run against parse-only: goal <= 3x
  - peak RSS growth per record (200k against 20k), all key tables and length statistics together: goal
    <= 100 bytes; and what each table holds per record
Results are printed and written to output/bench/validation.json. Timings are never asserted in tests.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import orjson

from tests.benchmarks import ROOT, publish
from tests.helpers import REALDATA

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
VALIDATE = """
import sys, tempfile
from pathlib import Path
from jobs.data.validate import validate_dataset
from jobs.preflight import data_policy
with tempfile.TemporaryDirectory() as out:
    result = validate_dataset(Path(sys.argv[1]), None, data_policy("dpo", eval_split=float(sys.argv[2])), Path(out))
    assert result.refused is None, result.refused
print("tables", *(f"{k}={v}" for k, v in result.table_bytes.items()))
"""
# Wraps a snippet: wall time of the snippet alone (imports excluded) and the peak RSS of the process.
HARNESS = """
import resource, time
start = time.perf_counter()
{body}
elapsed = time.perf_counter() - start
print(elapsed, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024)
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


def measure(snippet: str, *args: str) -> tuple[float, int, dict[str, int]]:
    """Best-of-REPEATS wall seconds of the snippet, the peak RSS bytes, each in a fresh process, and what
    the snippet reported on a `tables k=v ...` line (the validation's key-table bytes)."""
    code = HARNESS.format(body=textwrap.dedent(snippet))
    runs = []
    tables: dict[str, int] = {}
    for _ in range(REPEATS):
        out = subprocess.run([sys.executable, "-c", code, *args], cwd=ROOT, capture_output=True, text=True, check=True)
        seconds, rss = out.stdout.split()[-2:]
        runs.append((float(seconds), int(rss)))
        for line in out.stdout.splitlines():
            if line.startswith("tables "):
                tables = {k: int(v) for k, v in (item.split("=") for item in line.split()[1:])}
    return min(r[0] for r in runs), max(r[1] for r in runs), tables


def main() -> None:
    files = {n: dataset(n) for n in SIZES}
    results: dict[str, object] = {"records_per_file": list(SIZES), "bytes": {n: files[n].stat().st_size for n in SIZES}}
    for split in (0.0, 0.1):
        parse = {n: measure(PARSE_ONLY, str(files[n])) for n in SIZES}
        ours = {n: measure(VALIDATE, str(files[n]), str(split)) for n in SIZES}
        small, large = SIZES
        marginal_parse = (parse[large][0] - parse[small][0]) / (large - small)
        marginal_ours = (ours[large][0] - ours[small][0]) / (large - small)
        results[f"eval_split={split}"] = {
            "parse_only_seconds": {n: round(parse[n][0], 3) for n in SIZES},
            "validate_seconds": {n: round(ours[n][0], 3) for n in SIZES},
            "marginal_us_per_record": {
                "parse_only": round(marginal_parse * 1e6, 2),
                "validate": round(marginal_ours * 1e6, 2),
            },
            "marginal_ratio": round(marginal_ours / marginal_parse, 2),
            "whole_run_ratio_200k": round(ours[large][0] / parse[large][0], 2),
            "validate_peak_rss_mib": {n: round(ours[n][1] / 2**20) for n in SIZES},
            # Goal: at most 100 bytes a record beyond a fixed base, key tables and lengths together.
            "peak_rss_growth_bytes_per_record": round((ours[large][1] - ours[small][1]) / (large - small)),
            "table_bytes_per_record": {name: round(size / large, 1) for name, size in ours[large][2].items()},
        }
    publish("validation", results)


if __name__ == "__main__":
    main()
