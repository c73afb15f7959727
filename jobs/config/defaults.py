"""Every default the job sets on top of transformers/TRL, each with the reason, in one place.

Three kinds: training defaults that are safe everywhere, defaults that depend on the device (GPU or
CPU, bf16 or not), and model-loading defaults. Each applies only where the user did not set the
field. The device is probed once, in the parent, with NVML and no torch (`Device.probe_cheaply`): `--help`
shows the values that apply on this machine, and the run is resolved for it (jobs/config/resolved.py).
A training process only checks that torch sees the same device (`Device.probe_torch`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from jobs.methods import METHODS

# The failures the job exists to prevent (exploding updates, no warmup, no checkpoints, silent
# uploads) each have a default here that TRL does not set.
TRAINING_DEFAULTS: dict[str, Any] = {
    "max_grad_norm": 1.0,  # clip: one outlier batch must not wreck the weights
    "warmup_steps": 0.03,  # 3 % warmup; below 1 transformers reads it as a ratio of the total steps
    "lr_scheduler_type": "cosine",  # decays to ~0 by the end instead of stopping at full learning rate
    "logging_steps": 5,  # a progress line (and metrics) every 5 steps, so a stall is visible early
    "save_strategy": "steps",  # checkpoints by steps, so a preempted pod loses at most save_steps
    "save_steps": 100,
    "save_total_limit": 3,  # keep the volume from filling while keeping a fallback
    "report_to": ["tensorboard"],  # event files in the output directory; nothing leaves the machine
    "disable_tqdm": True,  # transformers' bars print dicts; the job draws its own bar in a terminal
    # transformers would log the running average in place of a NaN loss, hiding a diverged run.
    "logging_nan_inf_filter": False,
}

# One default depends on the model, so a training process decides it with the model's config in hand
# (jobs/train/batching.py): padding-free batches for the methods that declare them (SFT) wherever the
# model's attention keeps records apart (the same steps as padded batches, without padding).
MODEL_DEPENDENT = {"padding_free": (True, "where the model's attention keeps records apart, jobs/train/batching.py")}

# Conversational SFT trains on the assistant's tokens, as Axolotl, LLaMA-Factory, torchtune and OpenRLHF do
# (TRL trains every token, user and system turns included). Preflight builds the masks (jobs/data/chat.py),
# so TRL itself is given False; TRAIN_ASSISTANT_ONLY_LOSS=false trains every token.
DATA_DEPENDENT = {"assistant_only_loss": (True, "for conversational messages data, jobs/data/chat.py")}

# With evaluation data, evaluate as often as a checkpoint is saved (transformers' default: never).
EVAL_DEFAULTS: dict[str, Any] = {"eval_strategy": "steps", "eval_steps": TRAINING_DEFAULTS["save_steps"]}

# LoRA on every linear layer, as the QLoRA paper found necessary to match a full fine-tune. PEFT's own
# default (attention q/v only) left the demo's DPO reward margins flat over 30 steps; all-linear raised them.
LORA_DEFAULTS: dict[str, Any] = {"lora_target_modules": ["all-linear"]}

# QLoRA as its paper recommends (NF4 with double quantisation), whenever TRAIN_LOAD_IN_4BIT is set.
QLORA_DEFAULTS: dict[str, Any] = {"bnb_4bit_quant_type": "nf4", "use_bnb_nested_quant": True}


BF16_CAPABILITY = 8  # bf16 arithmetic in hardware: compute capability 8.0 (Ampere) and later


@dataclass(frozen=True)
class Gpu:
    name: str
    memory_bytes: int
    capability: int  # the major CUDA compute capability


def visible_gpus() -> list[Gpu]:
    """The GPUs this process may use, as NVML describes them (no torch import): those CUDA_VISIBLE_DEVICES
    lists (by index; by UUID, as many as it lists), none where it is empty or -1, none without a driver."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1"):
        return []
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
            if visible:
                listed = [part.strip() for part in visible.split(",")]
                handles = (
                    [handles[int(i)] for i in listed] if all(i.isdigit() for i in listed) else handles[: len(listed)]
                )
            return [
                Gpu(str(pynvml.nvmlDeviceGetName(h)), int(pynvml.nvmlDeviceGetMemoryInfo(h).total),
                    pynvml.nvmlDeviceGetCudaComputeCapability(h)[0])
                for h in handles
            ]  # fmt: skip
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no library, an index out of range: no usable GPU
        return []


@dataclass(frozen=True)
class Device:
    gpu: bool
    bf16: bool

    @property
    def description(self) -> str:
        if not self.gpu:
            return "CPU"
        return "GPU with bf16" if self.bf16 else "GPU without bf16"

    @classmethod
    def probe_torch(cls) -> Device:
        """What torch sees, in a training process, by the parent's rule: it must be what the parent's probe saw.
        (torch's own is_bf16_supported says yes on older GPUs too, where bf16 is only emulated.)"""
        import torch

        gpu = torch.cuda.is_available()
        return cls(gpu=gpu, bf16=gpu and torch.cuda.get_device_capability()[0] >= BF16_CAPABILITY)

    @classmethod
    def probe_cheaply(cls) -> Device:
        """NVML's answer, without importing torch: the parent's probe, for the run and for --help."""
        gpus = visible_gpus()
        return cls(gpu=bool(gpus), bf16=bool(gpus) and gpus[0].capability >= BF16_CAPABILITY)


def device_defaults(device: Device) -> dict[str, Any]:
    """Training defaults that depend on the device."""
    return {
        "use_cpu": not device.gpu,  # TRL's configs default to bf16 and raise on a CPU-only machine
        "bf16": device.bf16,  # bf16 mixed precision where the GPU has it ...
        "fp16": device.gpu and not device.bf16,  # ... fp16 on older GPUs, fp32 on CPU
        # Activation checkpointing trades ~20 % compute for much less memory on a GPU; on CPU it made
        # steps ~20x slower. transformers 5 renamed it; TRL's default still sets the old name.
        "activation_checkpointing": device.gpu,
        "gradient_checkpointing": device.gpu,
    }


def model_defaults(device: Device) -> dict[str, Any]:
    """Model-loading defaults: full precision is never the silent default on a GPU (out-of-memory risk)."""
    return {"dtype": "bfloat16" if device.bf16 else "float32"}  # fp16 weights overflow; fp32 on CPU


def training_settings(device: Device, has_eval: bool, overrides: dict[str, Any]) -> dict[str, Any]:
    """The trainer config's fields: safe defaults, then device defaults, then whatever the user set."""
    settings = {**TRAINING_DEFAULTS, **device_defaults(device), **(EVAL_DEFAULTS if has_eval else {}), **overrides}
    # A user who sets only the old name means the new one too.
    for old, new in (("gradient_checkpointing", "activation_checkpointing"),
                     ("gradient_checkpointing_kwargs", "activation_checkpointing_kwargs")):  # fmt: skip
        if old in overrides and new not in overrides:
            settings[new] = overrides[old]
    return settings


def model_settings(device: Device, overrides: dict[str, Any]) -> dict[str, Any]:
    """TRL ModelConfig's fields: device dtype, LoRA and QLoRA defaults under whatever the user set."""
    settings = {**model_defaults(device), **overrides}
    if settings.get("use_peft"):
        settings = {**LORA_DEFAULTS, **settings}
    if settings.get("load_in_4bit"):
        settings = {**QLORA_DEFAULTS, **settings}
    return settings


def default_for(name: str, group: str, device: Device) -> tuple[Any, str] | None:
    """The job's default for a field and when it applies, or None where TRL's own default stands (for --help)."""
    method = METHODS.get(group)
    if name in MODEL_DEPENDENT and method is not None and method.padding_free_by_default:
        return MODEL_DEPENDENT[name]
    if name in DATA_DEPENDENT and group == "sft":
        return DATA_DEPENDENT[name]
    here = f"on this machine ({device.description})"
    if group == "model":
        tables = ((model_defaults(device), here), (LORA_DEFAULTS, "with TRAIN_USE_PEFT"),
                  (QLORA_DEFAULTS, "with TRAIN_LOAD_IN_4BIT"))  # fmt: skip
    else:
        tables = ((device_defaults(device), here), (TRAINING_DEFAULTS, "job default"),
                  (EVAL_DEFAULTS, "with evaluation data"))  # fmt: skip
    for table, when in tables:
        if name in table:
            return table[name], when
    return None
