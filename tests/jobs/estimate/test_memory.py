"""The memory estimate against real peaks, and the refusal of runs that cannot fit, before any model loads."""

from __future__ import annotations

import contextlib
import json
import math
import re
import resource
import shutil
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from dev.testing import REALDATA, ROOT, clean_env, run_entrypoint
from jobs.config.defaults import Device
from jobs.config.resolved import resolve
from jobs.config.settings import load_config
from jobs.errors import EnvironmentProblem
from jobs.estimate import memory
from jobs.estimate.formula import Plan
from jobs.estimate.memory import REFUSE_ABOVE, Budget, Model, assess, cgroup_limit, cheapest_fix, plan_for

CPU, GPU_BF16 = Device(gpu=False, bf16=False), Device(gpu=True, bf16=True)

LLAMA_7B = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
            "intermediate_size": 11008, "num_hidden_layers": 32, "num_attention_heads": 32,
            "num_key_value_heads": 32, "vocab_size": 32000, "torch_dtype": "bfloat16"}  # fmt: skip


def write_sparse_llama(directory: Path, config: dict[str, Any], demo_model: str) -> Path:
    """A model directory whose safetensors file has a real header and no data (a sparse file: no disk used)."""
    h, i, layers, vocab = (config[k] for k in ("hidden_size", "intermediate_size", "num_hidden_layers", "vocab_size"))
    shapes = {"model.embed_tokens.weight": [vocab, h], "model.norm.weight": [h], "lm_head.weight": [vocab, h]}
    for n in range(layers):
        prefix = f"model.layers.{n}."
        shapes.update({prefix + f"self_attn.{p}_proj.weight": [h, h] for p in "qkvo"})
        shapes.update({prefix + "mlp.gate_proj.weight": [i, h], prefix + "mlp.up_proj.weight": [i, h],
                       prefix + "mlp.down_proj.weight": [h, i], prefix + "input_layernorm.weight": [h],
                       prefix + "post_attention_layernorm.weight": [h]})  # fmt: skip
    header, offset = {}, 0
    for name, shape in shapes.items():
        size = 2 * math.prod(shape)
        header[name] = {"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + size]}
        offset += size
    directory.mkdir()
    encoded = json.dumps(header).encode()
    with open(directory / "model.safetensors", "wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        handle.truncate(8 + len(encoded) + offset)
    (directory / "config.json").write_text(json.dumps(config), encoding="utf-8")
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(Path(demo_model) / name, directory / name)
    return directory


def run_measured(env: dict[str, str]) -> tuple[int, str, int]:
    """Run the entrypoint; its exit code, stderr and peak resident memory. The peak is the kernel's VmHWM,
    read until the process exits (getrusage's maxrss would count this test process's memory, which a
    forked child inherits as its high-water mark)."""
    process = subprocess.Popen([sys.executable, str(ROOT / "entrypoint.py")], env=env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    peak, status = 0, Path(f"/proc/{process.pid}/status")
    errors: list[str] = []
    reader = threading.Thread(target=lambda: errors.append(process.stderr.read()))  # type: ignore[union-attr]
    reader.start()
    while process.poll() is None:
        with contextlib.suppress(OSError, StopIteration, ValueError):  # exiting: its status is going away
            line = next(line for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
            peak = max(peak, int(line.split()[1]) * 1024)
        time.sleep(0.02)
    reader.join()
    return process.returncode, errors[0], peak


def test_a_7b_full_dpo_is_refused_in_seconds_without_loading_a_weight(demo_model: str, tmp_path: Path) -> None:
    model = write_sparse_llama(tmp_path / "llama-7b", LLAMA_7B, demo_model)
    env = clean_env(TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=str(model), TRAIN_OUTPUT_DIR=str(tmp_path / "out"),
                    TRAIN_DATA_PATH="dev/demo_data/dpo_pairs.jsonl")  # fmt: skip
    verdict = assess(resolve(load_config(env)))
    assert verdict is not None and verdict.estimate.parameters == pytest.approx(6.74e9, rel=0.01)
    if verdict.fraction <= REFUSE_ABOVE:
        pytest.skip(f"this machine has {verdict.budget.bytes / 1e9:.0f} GB: a 7B full DPO fits")
    code, stderr, peak = run_measured(env)
    assert code == 4, stderr[-3000:]
    message = next(json.loads(line)["message"] for line in stderr.splitlines() if "would run out of memory" in line)
    for part in ("weights", "reference copy", "optimizer states", "activations", "logits", "Cheapest fix: set"):
        assert part in message
    assert "TRAIN_MEMORY_CHECK=warn" in message
    assert peak < 400e6, f"peak RSS {peak / 1e6:.0f} MB: something loaded the 13 GB of weights"
    assert not (tmp_path / "out" / "data").exists() or not any((tmp_path / "out" / "data").iterdir())


def test_estimate_prints_the_breakdown_and_exits_4_where_training_would_be_refused(demo_model: str,
                                                                                   tmp_path: Path) -> None:  # fmt: skip
    model = write_sparse_llama(tmp_path / "llama-7b", LLAMA_7B, demo_model)
    run = run_entrypoint("estimate", TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=str(model), TRAIN_USE_PEFT="true",
                         TRAIN_LOAD_IN_4BIT="true", TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="1",
                         TRAIN_ACTIVATION_CHECKPOINTING="true")  # fmt: skip
    assert run.returncode == 0, run.stdout + run.stderr[-2000:]  # QLoRA of a 7B model fits in 24 GB; no data needed
    assert "6,738.4M parameters" in run.stdout and "QLoRA r=16 on 4bit weights" in run.stdout
    weights = float(re.search(r"^  weights +([\d.]+) GB", run.stdout, re.MULTILINE).group(1))  # type: ignore[union-attr]
    assert 3.5 < weights < 5.0  # NF4 layers + the fp32 embeddings and head on CPU
    full = run_entrypoint("estimate", TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=str(model))
    budget = psutil.virtual_memory().total
    if budget < 100e9:
        assert full.returncode == 4, full.stdout + full.stderr[-2000:]
        assert "training would be refused (exit 4); cheapest fix" in full.stdout


def test_the_cheapest_fix_is_the_one_that_changes_the_result_least(demo_model: str, tmp_path: Path) -> None:
    model = Model.read(str(write_sparse_llama(tmp_path / "llama-7b", LLAMA_7B, demo_model)))
    assert model is not None
    plan = Plan(gpu=True, weight_dtype="bfloat16", batch_size=8, max_length=2048, sequences_per_example=2,
                reference_model=True)  # fmt: skip
    gpu_80 = Budget(int(80e9), "an 80 GB GPU", 1)
    verdict = model.verdict(plan, gpu_80)
    assert verdict.fraction > REFUSE_ABOVE
    advice = cheapest_fix(verdict)
    # Full DPO of 7B in bf16 holds 13.5 GB of weights, a 13.5 GB reference, 27 GB of AdamW states and 13.5 GB
    # of gradients: over 80 % of 80 GB at any batch, so LoRA is needed. 32k tokens a step need checkpointing
    # and half the batch too (their logits alone are 25 GB); nothing stronger than needed is asked for.
    assert advice == (
        "set TRAIN_ACTIVATION_CHECKPOINTING=true; and TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE=4 with "
        "TRAIN_GRADIENT_ACCUMULATION_STEPS 2x higher (the same effective batch); and TRAIN_USE_PEFT=true "
        "(LoRA)"
    ), advice
    lora = model.verdict(Plan(gpu=True, weight_dtype="bfloat16", lora_rank=16, batch_size=4, max_length=4096), gpu_80)
    assert cheapest_fix(lora) == "set TRAIN_ACTIVATION_CHECKPOINTING=true"
    small = cheapest_fix(model.verdict(plan, Budget(int(16e9), "a 16 GB GPU", 1)))
    assert small.startswith("set TRAIN_ACTIVATION_CHECKPOINTING=true; and TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="), small
    assert small.endswith("; and TRAIN_USE_PEFT=true TRAIN_LOAD_IN_4BIT=true (QLoRA)"), small
    none = model.verdict(plan, Budget(int(4e9), "a 4 GB GPU", 1))
    assert cheapest_fix(none).startswith("no setting of this job fits")


def test_zero3_partitions_weights_gradients_and_states_over_the_processes(demo_model: str, tmp_path: Path) -> None:
    model = Model.read(str(write_sparse_llama(tmp_path / "llama-7b", LLAMA_7B, demo_model)))
    assert model is not None
    one = model.verdict(Plan(gpu=True, weight_dtype="bfloat16"), Budget(int(80e9), "GPU", 1)).estimate.parts
    eight = model.verdict(Plan(gpu=True, weight_dtype="bfloat16", zero_stage=3, processes=8),
                          Budget(int(80e9), "GPU", 1)).estimate.parts  # fmt: skip
    assert eight["weights"] == pytest.approx(one["weights"] / 8)
    assert eight["gradients"] == pytest.approx(one["gradients"] / 8)
    # DeepSpeed keeps fp32 master weights and fp32 moments (12 bytes a parameter), where torch's AdamW keeps
    # bf16 moments beside bf16 weights (4 bytes).
    assert one["optimizer states"] == pytest.approx(one["weights"] * 2)
    assert eight["optimizer states"] == pytest.approx(one["weights"] * 6 / 8)
    assert eight["activations"] == one["activations"]


def test_plan_reads_the_accelerate_config_and_the_method(demo_model: str) -> None:
    env = clean_env(TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=demo_model, TRAIN_DATA_PATH="x.jsonl",
                    TRAIN_ACCELERATE_CONFIG="zero3_offload", TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="4")  # fmt: skip
    run = resolve(load_config(env), GPU_BF16)
    plan = plan_for(run)
    assert (plan.zero_stage, plan.processes, plan.offload_optimizer, run.processes_per_machine) == (3, 8, True, 8)
    assert (plan.batch_size, plan.sequences_per_example, plan.reference_model) == (4, 2, True)
    assert (plan.weight_dtype, plan.activation_checkpointing) == ("bfloat16", True)
    sft = plan_for(resolve(load_config(clean_env(TRAIN_METHOD="sft", TRAIN_DATA_PATH="x.jsonl", TRAIN_USE_PEFT="true")),
                           CPU))  # fmt: skip
    assert (sft.lora_rank, sft.lora_dropout, sft.weight_dtype, sft.max_length) == (16, 0.05, "float32", 1024)
    dpo = plan_for(resolve(load_config(clean_env(TRAIN_METHOD="dpo", TRAIN_DATA_PATH="x.jsonl", TRAIN_USE_PEFT="true")),
                           CPU))  # fmt: skip
    assert dpo.lora_dropout == 0.0  # DPOConfig.disable_dropout zeroes LoRA's dropout too


@pytest.mark.parametrize(("text", "expected"), [("max\n", None), ("8589934592\n", 8589934592),
                                                ("9223372036854771712\n", None)])  # fmt: skip
def test_the_cgroup_limit_is_read_from_v2_then_v1(text: str, expected: int | None, tmp_path: Path) -> None:
    (tmp_path / "memory.max").write_text(text)
    assert cgroup_limit((tmp_path / "missing", tmp_path / "memory.max")) == expected


@pytest.mark.parametrize(("mode", "outcome"), [("refuse", "exit 4"), ("warn", "warning"), ("off", "nothing")])
def test_memory_check_modes(mode: str, outcome: str, demo_model: str, monkeypatch: pytest.MonkeyPatch,
                            caplog: pytest.LogCaptureFixture) -> None:  # fmt: skip
    """A machine with too little memory for the demo cannot exist here: its budget is replaced (a mock)."""
    monkeypatch.setattr(memory, "budget_for", lambda plan, processes: Budget(int(600e6), "a 600 MB machine", 1))
    config = resolve(load_config(clean_env(TRAIN_METHOD="dpo", TRAIN_MODEL_NAME_OR_PATH=demo_model,
                                           TRAIN_DATA_PATH="x.jsonl", TRAIN_MEMORY_CHECK=mode)), CPU)  # fmt: skip
    if outcome == "exit 4":
        with pytest.raises(EnvironmentProblem) as refused:
            memory.check_memory(config)
        message = str(refused.value)
        assert refused.value.exit_code == 4 and "of 0.60 GB (a 600 MB machine)" in message, message
        assert (
            "Cheapest fix: set TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE=4 with TRAIN_GRADIENT_ACCUMULATION_STEPS 2x" in message
        )
    elif outcome == "warning":
        assert memory.check_memory(config) is not None
        assert "memory is tight" in caplog.text and "0.60 GB" in caplog.text
    else:
        assert memory.check_memory(config) is None and not caplog.text


@pytest.mark.slow
def test_running_out_of_memory_exits_5_with_the_estimate_the_measured_peak_and_the_fix(
    llama_76m: str, tmp_path: Path
) -> None:
    """A real allocation failure: the process's address space is capped (RLIMIT_AS, 6 GiB) below what a
    batch of 16 x 512 tokens needs, and the check is only a warning, so training starts and torch's CPU
    allocator fails mid-step."""
    env = clean_env(TRAIN_METHOD="sft", TRAIN_MODEL_NAME_OR_PATH=llama_76m, TRAIN_OUTPUT_DIR=str(tmp_path),
                    TRAIN_DATA_PATH=str(REALDATA / "foundry_gsm8k_chat_train.jsonl"), TRAIN_MAX_STEPS="2",
                    TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE="16", TRAIN_MAX_LENGTH="512", TRAIN_MEMORY_CHECK="warn",
                    TRAIN_LOG_FORMAT="text")  # fmt: skip
    cap = 6 * 2**30

    def limit_address_space() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    run = subprocess.run([sys.executable, "entrypoint.py"], cwd=ROOT, env=env, preexec_fn=limit_address_space,
                         capture_output=True, text=True, timeout=600, check=False)  # fmt: skip
    assert run.returncode == 5, run.stderr[-3000:]
    failure = run.stderr[run.stderr.index("ERROR jobs.errors: out of memory") :]
    assert "can't allocate memory" in failure and "Traceback" not in run.stderr
    for part in ("activations", "logits", "peak", "Measured: peak resident memory", "Cheapest fix: set "):
        assert part in failure, failure
