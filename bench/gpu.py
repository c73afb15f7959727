"""The GPU figures: the job and the plainest TRL script, SFT and DPO+LoRA in bf16, on a ~0.5B model.

    bench/gpu.sh              # on a lent GPU machine (it installs the carried wheels first)
    bench/gpu.sh --dry-run    # here: the same path end to end on the tiny demo model, on CPU

Builds a Qwen2-0.5B-shaped model with random weights (offline, the demo's byte-level tokenizer), then
trains it through `entrypoint.py` and through bench/bare_trl.py with the same resolved settings, on
real records (the bundled Orca DPO pairs, and the Alpaca demo for SFT; sequences up to 1,024 tokens).
SFT runs as the job's default (padding-free batches, attention per record: jobs/train/batching.py) and on
padded batches, for the speed-up of that default on this GPU. Reports per run: tokens per second (TRL's
`num_tokens` over `train_runtime`), MFU against the GPU's dense bf16 peak (6 x parameters x tokens/s: a
forward and a backward pass, or for DPO+LoRA a forward and a backward without weight gradients plus the
reference forward, which costs the same), the peak GPU memory the job measured against its own estimate,
and whether the exporter served NVML readings. Results:
$OUT/gpu.json when OUT is set (the device tool brings that folder back), else output/bench/gpu.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REALDATA = ROOT / "tests" / "data" / "realdata"
# Dense bf16 peaks (no sparsity), by the name NVML gives, in FLOP/s.
PEAK_BF16 = {"H200": 989.4e12, "H100": 989.4e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12}
QWEN2_05B = {
    "vocab_size": 151936, "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24,
    "num_attention_heads": 14, "num_key_value_heads": 2, "max_position_embeddings": 4096, "tie_word_embeddings": True,
    "rope_theta": 1000000.0,
}  # fmt: skip
RUNS = {  # name: (method, data, extra TRAIN_* settings)
    "sft": ("sft", REALDATA / "llamafactory_alpaca_en_demo.json", {"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "8"}),
    "sft_padded": ("sft", REALDATA / "llamafactory_alpaca_en_demo.json",
                   {"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "8", "TRAIN_PADDING_FREE": "false"}),
    "dpo_lora": ("dpo", REALDATA / "foundry_orca_dpo_pairs_validation.jsonl",
                 {"TRAIN_USE_PEFT": "true", "TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "4"}),
}  # fmt: skip


def build_model(directory: Path) -> None:
    """A Qwen2-0.5B-shaped model with random weights, in bf16, and the demo tokenizer."""
    if (directory / "config.json").is_file():
        return
    import torch
    from transformers import Qwen2Config, Qwen2ForCausalLM

    from dev.demo import build_tokenizer

    tokenizer = build_tokenizer()
    config = Qwen2Config(**QWEN2_05B, pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config).to(torch.bfloat16)
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)


def scrape_until_exit(process: subprocess.Popen[bytes], url: str, seen: dict[str, str]) -> None:
    """Scrape /metrics every second while the job runs, keeping the last answer (the final values)."""
    while process.poll() is None:
        try:
            with urllib.request.urlopen(url, timeout=2) as reply:
                seen["last"] = reply.read().decode()
        except OSError:
            pass
        time.sleep(1)


def metric(text: str, name: str) -> float | None:
    for line in text.splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            return float(line.rsplit(" ", 1)[1])
    return None


def job_run(name: str, model: Path, steps: int, work: Path, dry_run: bool) -> dict[str, Any]:
    from dev.testing import free_port

    method, data, extra = RUNS[name]
    output, port = work / f"job-{name}", free_port()
    env = {
        **os.environ, "TRAIN_METHOD": method, "TRAIN_MODEL_NAME_OR_PATH": str(model), "TRAIN_DATA_PATH": str(data),
        "TRAIN_OUTPUT_DIR": str(output), "TRAIN_MAX_STEPS": str(steps), "TRAIN_MAX_LENGTH": "1024",
        "TRAIN_LOGGING_STEPS": "5", "TRAIN_SAVE_STRATEGY": "no", "TRAIN_DROP_INVALID": "true",
        "TRAIN_MAX_INVALID_FRACTION": "0.5", "TRAIN_METRICS_PORT": str(port), "TRAIN_METRICS_ADDR": "127.0.0.1",
        "HF_DATASETS_CACHE": str(work / "hf-datasets"), **extra,
        **({"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE": "2", "TRAIN_MAX_LENGTH": "256"} if dry_run else {}),
    }  # fmt: skip
    seen: dict[str, str] = {}
    started = time.monotonic()
    with (work / f"job-{name}.log").open("w") as log:
        process = subprocess.Popen([sys.executable, "entrypoint.py"], cwd=ROOT, env=env, stdout=log, stderr=log)
        scraper = threading.Thread(target=scrape_until_exit, args=(process, f"http://127.0.0.1:{port}/metrics", seen))
        scraper.start()
        code = process.wait()
        scraper.join()
    final = seen.get("last", "")
    figures = _trained(output / "final" / "log_history.json")
    return {
        **figures, "exit_code": code, "wall_seconds": round(time.monotonic() - started, 1),
        "peak_memory_bytes": metric(final, "trainjob_memory_peak_bytes"),
        "estimate_bytes": metric(final, "trainjob_memory_estimate_bytes"),
        "nvml_served": "trainjob_gpu_memory_used_bytes" in final,
        "settings": str(output / "final" / "effective_config.json"), "data": str(output / "data"),
    }  # fmt: skip


def bare_run(name: str, job: dict[str, Any], steps: int, work: Path) -> dict[str, Any]:
    output = work / f"bare-{name}"
    env = {**os.environ, "HF_DATASETS_CACHE": str(work / "hf-datasets-bare")}
    command = [
        sys.executable,
        "bench/bare_trl.py",
        job["settings"],
        job["data"],
        str(output),
        "--max-steps",
        str(steps),
    ]
    started = time.monotonic()
    with (work / f"bare-{name}.log").open("w") as log:
        code = subprocess.run(command, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
    lines = (work / f"bare-{name}.log").read_text().splitlines()
    reported = next((json.loads(line) for line in reversed(lines) if line.startswith('{"first_step_seconds"')), {})
    return {**reported, "exit_code": code, "wall_seconds": round(time.monotonic() - started, 1)}


def _trained(log_history: Path) -> dict[str, Any]:
    if not log_history.is_file():
        return {}
    history = json.loads(log_history.read_text())
    tokens = max((entry.get("num_tokens", 0) for entry in history), default=0)
    runtime = next((entry["train_runtime"] for entry in history if "train_runtime" in entry), None)
    return {"num_tokens": tokens, "train_runtime": runtime, "tokens_per_second": tokens / runtime if runtime else None}


def gpu_peak() -> tuple[str, float | None]:
    import torch

    if not torch.cuda.is_available():
        return "none", None
    name = torch.cuda.get_device_name(0)
    return name, next((peak for key, peak in PEAK_BF16.items() if key in name), None)


def parameters(model: Path) -> int:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    with torch.device("meta"):
        return AutoModelForCausalLM.from_config(AutoConfig.from_pretrained(model)).num_parameters()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dry-run", action="store_true", help="the tiny demo model on CPU, a few steps")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    device, peak = gpu_peak()
    if args.dry_run:
        model, steps = ROOT / ".cache" / "demo-model", 4
    else:
        if peak is None and device == "none":
            sys.stderr.write("no GPU here: run bench/gpu.sh --dry-run, or on the lent device\n")
            return 2
        model, steps = ROOT / ".cache" / "bench" / "qwen2-0.5b", 30
        build_model(model)
    n_params = parameters(model)
    results: dict[str, Any] = {"device": device, "dry_run": args.dry_run, "parameters": n_params, "steps": steps}
    with tempfile.TemporaryDirectory(prefix="gpu-bench-") as tmp:
        work = Path(tmp)
        for name in RUNS:
            job = job_run(name, model, steps, work, args.dry_run)
            bare = bare_run(name, job, steps, work)
            entry: dict[str, Any] = {"job": job, "bare": bare}
            for who in ("job", "bare"):
                rate = entry[who].get("tokens_per_second")
                if rate and peak:
                    entry[who]["mfu"] = round(6 * n_params * rate / peak, 4)
            if job.get("tokens_per_second") and bare.get("tokens_per_second"):
                entry["tokens_per_second_ratio"] = round(job["tokens_per_second"] / bare["tokens_per_second"], 3)
            if job.get("peak_memory_bytes") and job.get("estimate_bytes"):
                entry["peak_over_estimate"] = round(job["peak_memory_bytes"] / job["estimate_bytes"], 3)
            for who in ("job", "bare"):
                entry[who].pop("settings", None), entry[who].pop("data", None)
            results[name] = entry
    out = Path(os.environ.get("OUT") or ROOT / "output" / "bench")
    out.mkdir(parents=True, exist_ok=True)
    (out / "gpu.json").write_text(json.dumps(results, indent=2) + "\n")
    sys.stdout.write(json.dumps(results, indent=2) + "\n")
    failed = [name for name in RUNS if results[name]["job"]["exit_code"] or results[name]["bare"]["exit_code"]]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
