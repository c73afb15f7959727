"""`make bench`: every part, then bench/results/<date>.json and the table in BENCHMARKS.md.

.venv/bin/python -m bench.run                       # all parts
.venv/bin/python -m bench.run --only training --quick
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import estimate, exporter, first_step, integrity, memory, merge, packing, samples, training, validation
from bench.common import ROOT, publish

PARTS: dict[str, Callable[[bool], dict[str, Any]]] = {
    "training": training.run,
    "memory": memory.run,
    "estimate": estimate.run,
    "packing": packing.run,
    "validation": validation.run,
    "first_step": first_step.run,
    "exporter": exporter.run,
    "integrity": integrity.run,
    "merge": merge.run,
    "samples": samples.run,
}
RESULTS = ROOT / "bench" / "results"
TABLE = ROOT / "BENCHMARKS.md"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())  # fmt: skip
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    gpu = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True,
                         check=False).stdout.strip() if _has("nvidia-smi") else ""  # fmt: skip
    return {
        "cpu": cpu, "cpus": len(os.sched_getaffinity(0)), "memory_gib": round(memory / 2**30, 1),
        "gpu": gpu or "none", "python": platform.python_version(), "platform": platform.platform(),
        "revision": subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True,
                                   check=False).stdout.strip(),
    }  # fmt: skip


def _has(command: str) -> bool:
    return any((Path(d) / command).is_file() for d in os.environ.get("PATH", "").split(os.pathsep))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", choices=PARTS, action="append", help="run only these parts")
    parser.add_argument("--quick", action="store_true", help="fewer steps: a check of the runner, not figures")
    args = parser.parse_args(argv)
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d"), "quick": args.quick, "machine": machine()}
    path = RESULTS / f"{results['date']}{'-quick' if args.quick else ''}.json"
    if args.only and path.is_file():  # the other parts keep today's figures, each with the revision it ran at
        earlier = json.loads(path.read_text())
        for name in PARTS:
            if name in earlier:
                earlier[name].setdefault("revision", earlier["machine"]["revision"])
        results = {**earlier, "machine": results["machine"]}
    for name in args.only or PARTS:
        part_started = time.monotonic()
        results[name] = PARTS[name](args.quick)
        results[name]["seconds"] = round(time.monotonic() - part_started)
        results[name]["revision"] = results["machine"]["revision"]
        publish(name, results[name])
    results["seconds"] = sum(results[name].get("seconds", 0) for name in PARTS if name in results)
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2) + "\n")
    if not args.quick:
        write_table(results)
    sys.stdout.write("\n".join(table_lines(results)) + f"\n\nresults: {path.relative_to(ROOT)}\n")
    return 0


def _ratio(figure: dict[str, Any]) -> str:
    goal = figure.get("goal")
    low, high = figure["range"]
    verdict = "" if goal is None else (" ✓" if figure["median"] <= goal else " ✗")
    return f"{figure['median']:.2f} ({low:.2f}-{high:.2f}){verdict}"


def table_lines(results: dict[str, Any]) -> list[str]:
    """The Markdown table of what this run measured."""
    host = results["machine"]
    revisions = sorted({results[name].get("revision", host["revision"]) for name in PARTS if name in results}
                       | {row["revision"] for row in _rerun_rows(results)})  # fmt: skip
    lines = [f"Measured {results['date']} at {', '.join(revisions)} on {host['cpu']} ({host['cpus']} CPUs, "
             f"{host['memory_gib']} GiB, GPU: {host['gpu']}), Python {host['python']}; "
             f"{results['seconds']} s in all. Ratios are ours / baseline: median (range over the repetitions); "
             "✓ meets the goal, ✗ misses it.", ""]  # fmt: skip
    for name, lines_of in (("training", _training_lines), ("memory", _memory_lines), ("estimate", _estimate_lines),
                           ("packing", _packing_lines), ("validation", _validation_lines),
                           ("first_step", _first_step_lines), ("exporter", _exporter_lines),
                           ("integrity", _integrity_lines), ("merge", _merge_lines),
                           ("samples", _samples_lines)):  # fmt: skip
        if name in results:
            lines += [*lines_of(results[name]), ""]
    return lines


def _rerun_rows(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Training rows rerun on their own after the part (each with the revision it ran at)."""
    models = results.get("training", {}).values()
    return [row for methods in models if isinstance(methods, dict) for row in methods.values()
            if isinstance(row, dict) and "revision" in row]  # fmt: skip


def _training_lines(training: dict[str, Any]) -> list[str]:
    lines = ["| model | method | first step, s (job / bare) | ratio (goal 1.10) | step, s (job / bare) | "
             "ratio (goal 1.02) | peak RSS, MiB (job / bare) | ratio |", "|---|---|---|---|---|---|---|---|"]  # fmt: skip
    for model, methods in training.items():
        for method, f in methods.items() if isinstance(methods, dict) else ():
            job, bare = f["job"], f["bare"]
            rerun = f" (at {f['revision']})" if "revision" in f else ""
            lines.append(
                f"| {model} | {method}{rerun} | {job['first_step_wall_seconds']['median']} / "
                f"{bare['first_step_wall_seconds']['median']} | {_ratio(f['ratio_first_step_wall_seconds'])} | "
                f"{job['step_seconds']['median']} / {bare['step_seconds']['median']} | "
                f"{_ratio(f['ratio_step_seconds'])} | {job['peak_rss_mib']['median']:.0f} / "
                f"{bare['peak_rss_mib']['median']:.0f} | {_ratio(f['ratio_peak_rss_mib'])} |"
            )
    return lines


def _memory_lines(m: dict[str, Any]) -> list[str]:
    peaks = ", ".join(f"{name} {statistics.median(values):.2f}" for name, values in m["peak_rss_gib"].items())
    return [f"Peak RSS on the 76M model, GiB (DPO batch {m['dpo_batch']}, max_length {m['max_length']}): {peaks}. "
            f"DPO+LoRA / SFT+LoRA at equal work: {m['dpo_lora_over_sft_lora']} (goal 1.10); full DPO / DPO+LoRA: "
            f"{m['dpo_full_over_dpo_lora']}; precomputed reference log-probs save {m['precomputed_reference_saves_gib']} "
            "GiB."]  # fmt: skip


def _estimate_lines(estimate: dict[str, Any]) -> list[str]:
    runs = ", ".join(f"{name} {entry['ratio']}" for name, entry in estimate["runs"].items())
    verdict = "✓" if estimate["ratio_min"] >= 0.8 and estimate["ratio_max"] <= 1.2 else "✗"
    return [f"Memory estimate / measured peak, CPU, batch 2 x 512 tokens (goal 0.8-1.2) {verdict}: {runs}."]


def _packing_lines(packing: dict[str, Any]) -> list[str]:
    lines = [f"| SFT, {packing['model']} model, one epoch | tokens/s against padded batches (goal 1.5) | "
             "eval loss after the epoch, per repetition |", "|---|---|---|"]  # fmt: skip
    for name in ("alpaca", "gsm8k"):
        figures = packing[name]
        lines.append(f"| {name}, padded batches of 8 records | 1 | {figures['eval_loss']['padded']} |")
        modes = (("padding_free", "padding-free batches of 8 records (default)"),
                 ("packed_bfd", f"BFD packing, {figures['packed_rows_per_step']} rows a step"))  # fmt: skip
        for mode, title in modes:
            value = figures["speedup"][mode]
            verdict = " ✓" if value >= 1.5 else " ✗"
            lines.append(f"| {name}, {title} | {value}{verdict} | {figures['eval_loss'][mode]} |")
    return lines


def _validation_lines(validation: dict[str, Any]) -> list[str]:
    lines = ["| validation, 200k DPO records | marginal (goal 2.0) | whole run (goal 3.0) | CPU, all processes | "
             "same, against parse-only reading 1 MiB blocks: marginal / whole / CPU | "
             "RSS growth, B/record (goal 100) |", "|---|---|---|---|---|---|"]  # fmt: skip
    for split in ("eval_split=0.0", "eval_split=0.1"):
        v = validation[split]
        same = v.get("same_reader") or {}
        equal = " / ".join(
            str(same.get(k, "-")) for k in ("marginal_ratio", "whole_run_ratio_200k", "marginal_cpu_ratio")
        )
        lines.append(f"| {split} | {v['marginal_ratio']} | {v['whole_run_ratio_200k']} | {v['marginal_cpu_ratio']} | "
                     f"{equal} | {v['peak_rss_growth_bytes_per_record']} |")  # fmt: skip
    return lines


def _first_step_lines(first: dict[str, Any]) -> list[str]:
    lines = ["| time to first step, DPO, demo model | records | job, s | bare TRL, s | ratio (goal 1.10) |",
             "|---|---|---|---|---|"]  # fmt: skip
    for kind in first_step.KINDS:
        f = first[kind]
        lines.append(f"| {kind.replace('_', ' ')} | {f['records']} | {f['job_seconds']['median']} | "
                     f"{f['bare_seconds']['median']} | {_ratio(f['ratio'])} |")  # fmt: skip
    return lines


def _exporter_lines(e: dict[str, Any]) -> list[str]:
    return [f"Exporter scraped 20/s against off, step time: {e['ratio_on_over_off']} (goal 1.02; range "
            f"{e['spread_on'][0]}-{e['spread_on'][1]})."]  # fmt: skip


def _integrity_lines(i: dict[str, Any]) -> list[str]:
    return [f"Checkpoint checksums, 76M model, {i['checkpoint_bytes'] / 1e9:.2f} GB in {i['files']} files: written in "
            f"{i['save_seconds']} s, hashed in the save in {i['checksum_seconds']} s ({i['checksums_over_save']:.2f} "
            f"of the write), verified before a resume in {i['verify_seconds']} s ({i['verify_over_save']:.2f})."]  # fmt: skip


def _merge_lines(m: dict[str, Any]) -> list[str]:
    lines = ["| LoRA r=16 merged into the 76M model (`entrypoint.py merge`) | shards | s | peak RSS | estimate | "
             "peak / estimate |", "|---|---|---|---|---|---|"]  # fmt: skip
    for dtype in ("float32", "bfloat16"):
        if dtype in m:
            r = m[dtype]
            lines.append(f"| {dtype} base, {r['weights_bytes'] / 1e6:.0f} MB | {r['shards']} | {r['seconds']} "
                         f"({r['seconds_range'][0]}-{r['seconds_range'][1]}) | {r['peak_rss_bytes'] / 1e9:.2f} GB | "
                         f"{r['estimate_bytes'] / 1e9:.2f} GB | {r['peak_over_estimate']:.2f} |")  # fmt: skip
    return lines


def _samples_lines(s: dict[str, Any]) -> list[str]:
    verdict = "✓" if s["share_at_default_cadence"] <= s["goal"] else "✗"
    return [f"Samples, {s['model']} model, {s['samples']} prompts x {s['max_new_tokens']} new tokens: a round as the "
            f"job ran it {s['round_seconds_median']} s ({s['stopped']} of {s['samples']} stopped); none stopping "
            f"{s['worst_round_seconds']} s, {s['worst_round_in_steps']} optimizer steps of {s['step_seconds']} s, "
            f"{s['share_at_default_cadence']:.3f} of the training between two evaluations every "
            f"{s['default_eval_steps']} steps (goal {s['goal']}) {verdict}; the rounds' share of the run "
            f"evaluated every {s['eval_steps']} steps: {s['share_at_this_cadence']:.3f}."]  # fmt: skip


def write_table(results: dict[str, Any]) -> None:
    """Replace the generated part of BENCHMARKS.md (between its markers) with this run's table."""
    text = TABLE.read_text() if TABLE.is_file() else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    TABLE.write_text(f"{head}{BEGIN}\n" + "\n".join(table_lines(results)) + f"\n{END}{tail}")


if __name__ == "__main__":
    sys.exit(main())
