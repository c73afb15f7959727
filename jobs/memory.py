"""Will the run fit: the memory estimate (jobs/estimate.py) against the memory this machine has, checked
before the model loads, and the measured peak beside it once training runs.

On a GPU the budget is one device's memory (each process has its own). On CPU it is the smaller of the
container's cgroup limit (a pod's `resources.limits.memory`) and the host's RAM, shared by every process
of the job on this machine. Above REFUSE_ABOVE of it the job refuses (exit 4) with the breakdown and the
cheapest change that fits; above WARN_ABOVE it warns. TRAIN_MEMORY_CHECK=warn or off overrides the
refusal, for a model whose shape the estimate misreads.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jobs.catalog import load_catalog
from jobs.config import JobConfig
from jobs.defaults import Device, model_settings, training_settings
from jobs.errors import EnvironmentProblem
from jobs.estimate import MemoryEstimate, ModelShape, Plan, Tensor, estimate_memory, human_size, read_tensors
from jobs.methods import METHODS
from jobs.topology import accelerate_settings

logger = logging.getLogger(__name__)

REFUSE_ABOVE = 0.95
WARN_ABOVE = 0.80
CUDA_CONTEXT = 750 * 2**20  # the CUDA context and kernels: outside torch's allocator, typically 0.5-1 GB
CGROUP_LIMITS = (Path("/sys/fs/cgroup/memory.max"), Path("/sys/fs/cgroup/memory/memory.limit_in_bytes"))


@dataclass(frozen=True)
class Budget:
    """The memory one process's estimate is compared with, and where that figure comes from."""

    bytes: int
    source: str
    processes: int  # processes of the job sharing it (CPU) or 1 (a GPU each)


def cgroup_limit(paths: tuple[Path, ...] = CGROUP_LIMITS) -> int | None:
    """The container's memory limit (cgroup v2, then v1), or None when unlimited."""
    for path in paths:
        try:
            text = path.read_text(encoding="utf-8").strip()
        except OSError:
            continue
        if text.isdigit() and int(text) < 2**60:  # v1 writes "unlimited" as a huge number, v2 as "max"
            return int(text)
        return None
    return None


def gpu_memory() -> tuple[int, str] | None:
    """The first GPU's memory and name, from NVML (no torch import)."""
    try:
        import pynvml

        pynvml.nvmlInit()
        try:
            handle = pynvml.nvmlDeviceGetHandleByIndex(0)
            return int(pynvml.nvmlDeviceGetMemoryInfo(handle).total), str(pynvml.nvmlDeviceGetName(handle))
        finally:
            pynvml.nvmlShutdown()
    except Exception:  # no driver, no device: not a GPU machine
        return None


def budget_for(plan: Plan, processes_here: int) -> Budget:
    if plan.gpu:
        found = gpu_memory()
        if found is not None:
            return Budget(
                found[0] - CUDA_CONTEXT, f"GPU 0 ({found[1]}) less {CUDA_CONTEXT / 2**30:.2f} GiB for CUDA", 1
            )
    import psutil

    ram = int(psutil.virtual_memory().total)
    limit = cgroup_limit()
    if limit is not None and limit < ram:
        return Budget(limit, "the container's memory limit (cgroup memory.max)", processes_here)
    return Budget(ram, "host RAM", processes_here)


def _zero(accelerate: dict[str, Any]) -> tuple[int, bool]:
    """ZeRO stage and optimizer offload from an Accelerate config's deepspeed section (or its JSON file)."""
    if accelerate.get("distributed_type") != "DEEPSPEED":
        return 0, False
    section = accelerate.get("deepspeed_config") or {}
    config_file = section.get("deepspeed_config_file")
    if config_file and Path(config_file).is_file():
        zero = json.loads(Path(config_file).read_text(encoding="utf-8")).get("zero_optimization", {})
        offload = (zero.get("offload_optimizer") or {}).get("device", "none") not in ("none", None)
        return int(zero.get("stage", 0)), offload
    return int(section.get("zero_stage", 0)), section.get("offload_optimizer_device", "none") not in ("none", None)


def plan_for(config: JobConfig, device: Device) -> tuple[Plan, int]:
    """The run's memory-relevant settings as it will train (job defaults, then TRL's), and how many of
    its processes share this machine."""
    catalog = load_catalog()
    method = METHODS[config.method]

    def trl_default(group: str, name: str) -> Any:
        return catalog.get(group, {}).get(name, {}).get("default")

    model = model_settings(device, config.model)
    training = training_settings(device, False, config.training)

    def setting(name: str) -> Any:
        return training[name] if name in training else (trl_default(method.name, name) or trl_default("training", name))

    accelerate = accelerate_settings(config.accelerate_config)
    topology = config.topology
    processes = topology.num_processes or (int(accelerate.get("num_processes", 1)) if accelerate else 1)
    machines = topology.num_machines or (max(1, int(accelerate.get("num_machines", 1))) if accelerate else 1)
    zero_stage, offload = _zero(accelerate)
    lora = bool(model.get("use_peft"))
    plan = Plan(
        gpu=device.gpu,
        weight_dtype=str(model.get("dtype") or "float32"),
        quantization="4bit" if model.get("load_in_4bit") else ("8bit" if model.get("load_in_8bit") else None),
        lora_rank=int(model.get("lora_r") or trl_default("model", "lora_r")) if lora else None,
        # TRL's disable_dropout (DPO, KTO) zeroes every nn.Dropout, LoRA's included
        lora_dropout=0.0
        if setting("disable_dropout")
        else float(model.get("lora_dropout", trl_default("model", "lora_dropout")) or 0.0),
        batch_size=int(setting("per_device_train_batch_size")),
        max_length=int(setting("max_length") or 1024),
        sequences_per_example=method.sequences_per_example,
        reference_model=method.reference_model,
        precomputed_reference=bool(setting("precompute_ref_log_probs")),
        activation_checkpointing=bool(setting("activation_checkpointing") or setting("gradient_checkpointing")),
        attention=str(model.get("attn_implementation") or "sdpa"),
        optimizer=str(setting("optim") or "adamw_torch"),
        zero_stage=zero_stage,
        processes=processes,
        offload_optimizer=offload,
    )
    return plan, max(1, processes // machines)


@dataclass(frozen=True)
class Verdict:
    """One run's estimate for a model against its budget."""

    model: Model
    plan: Plan
    estimate: MemoryEstimate
    budget: Budget

    @property
    def needed(self) -> float:
        return self.estimate.total * (1 if self.plan.gpu else self.budget.processes)

    @property
    def fraction(self) -> float:
        return self.needed / self.budget.bytes

    def lines(self) -> list[str]:
        each = " per process" if self.budget.processes > 1 else ""
        head = (f"memory estimate for {self.estimate.parameters / 1e6:,.1f}M parameters ({self.model.path}), "
                f"{self.plan.describe()}, {'GPU' if self.plan.gpu else 'CPU'}{each}:")  # fmt: skip
        shared = f" x {self.budget.processes} processes" if self.budget.processes > 1 and not self.plan.gpu else ""
        tail = (f"needs {human_size(self.needed)}{shared} of {human_size(self.budget.bytes)} "
                f"({self.budget.source}): {self.fraction:.0%}")  # fmt: skip
        return [head, *self.estimate.lines(), tail]


@dataclass(frozen=True)
class Model:
    """What the estimate reads of a model directory."""

    path: str
    tensors: list[Tensor]
    shape: ModelShape

    @classmethod
    def read(cls, path: str) -> Model | None:
        tensors = read_tensors(Path(path))
        if not tensors:
            return None
        return cls(path, tensors, ModelShape.read(Path(path)))

    def verdict(self, plan: Plan, budget: Budget) -> Verdict:
        return Verdict(self, plan, estimate_memory(self.tensors, self.shape, plan), budget)


def assess(config: JobConfig) -> Verdict | None:
    """The run's estimate against this machine's memory; None when the weights are not safetensors."""
    model = Model.read(str(config.model["model_name_or_path"]))
    if model is None:
        return None
    device = Device.probe_cheaply()
    plan, processes_here = plan_for(config, device)
    return model.verdict(plan, budget_for(plan, processes_here))


Change = tuple[str, dict[str, Any]]  # (what to set, the plan fields it changes)


def _changes(plan: Plan) -> list[list[Change]]:
    """What could shrink the run, cheapest first: changes that leave the result the same (activation
    checkpointing, a smaller batch with more accumulation, ZeRO-3), then those that change what is trained
    (LoRA, then QLoRA). Each inner list is one kind of change, its options from mildest to strongest."""
    kinds: list[list[Change]] = []
    if not plan.activation_checkpointing:
        kinds.append([("TRAIN_ACTIVATION_CHECKPOINTING=true", {"activation_checkpointing": True})])
    batches = [plan.batch_size // 2**n for n in range(1, plan.batch_size.bit_length())]
    if batches:
        kinds.append([(f"TRAIN_PER_DEVICE_TRAIN_BATCH_SIZE={b} with TRAIN_GRADIENT_ACCUMULATION_STEPS "
                       f"{plan.batch_size // b}x higher (the same effective batch)", {"batch_size": b})
                      for b in batches])  # fmt: skip
    if plan.processes > 1 and plan.zero_stage < 3:
        kinds.append([("TRAIN_ACCELERATE_CONFIG=zero3 (ZeRO-3 over the processes)", {"zero_stage": 3})])
    adapters: list[Change] = []
    lora = {"lora_rank": plan.lora_rank or 16, "lora_dropout": plan.lora_dropout if plan.lora_rank else 0.05}
    if plan.lora_rank is None:
        adapters.append(("TRAIN_USE_PEFT=true (LoRA)", lora))
    if plan.quantization is None:
        adapters.append(("TRAIN_USE_PEFT=true TRAIN_LOAD_IN_4BIT=true (QLoRA)", {**lora, "quantization": "4bit"}))
    if adapters:
        kinds.append(adapters)
    return kinds


def cheapest_fix(verdict: Verdict) -> str:
    """The cheapest change whose estimate fits without a warning: one change alone if one suffices, else
    the kinds of change together, each at its mildest option that fits (or its strongest)."""

    def fits(changes: dict[str, Any]) -> bool:
        return verdict.model.verdict(replace(verdict.plan, **changes), verdict.budget).fraction <= WARN_ABOVE

    kinds = _changes(verdict.plan)
    for kind in kinds:
        for name, changes in kind:
            if fits(changes):
                return f"set {name}"
    chosen: list[Change | None] = []
    for kind in kinds:  # each kind at its mildest option that fits with those before it, else its strongest
        done = {k: v for option in chosen if option for k, v in option[1].items()}
        chosen.append(next((option for option in kind if fits({**done, **option[1]})), kind[-1]))
        if fits({k: v for option in chosen if option for k, v in option[1].items()}):
            return "set " + "; and ".join(option[0] for option in _relaxed(chosen, kinds, fits) if option)
    return "no setting of this job fits it here: use a device with more memory, or more of them with ZeRO-3"


def _relaxed(chosen: list[Change | None], kinds: list[list[Change]], fits: Any) -> list[Change | None]:
    """Undo what the fit does not need, the costliest kind first: back to nothing, or its mildest option that fits."""
    chosen = list(chosen)
    for index, kind in reversed(list(enumerate(kinds[: len(chosen)]))):
        for option in (None, *kind):
            trial = [option if i == index else c for i, c in enumerate(chosen)]
            if fits({k: v for c in trial if c for k, v in c[1].items()}):
                chosen[index] = option
                break
    return chosen


def check_memory(config: JobConfig) -> Verdict | None:
    """Refuse (exit 4) a run whose estimate exceeds REFUSE_ABOVE of the memory, warn above WARN_ABOVE."""
    mode = config.job.memory_check
    if mode == "off":
        return None
    verdict = assess(config)
    if verdict is None:
        logger.warning("memory not estimated: the weights are not safetensors")
        return None
    _export(verdict)
    if verdict.fraction <= WARN_ABOVE:
        logger.info("memory estimate: %s of %s (%.0f%%; `entrypoint.py estimate` shows the breakdown)",
                    human_size(verdict.needed), human_size(verdict.budget.bytes), 100 * verdict.fraction)  # fmt: skip
        return verdict
    report = "\n".join(verdict.lines())
    advice = cheapest_fix(verdict)
    if verdict.fraction > REFUSE_ABOVE and mode == "refuse":
        raise EnvironmentProblem(f"this run would run out of memory:\n{report}\nCheapest fix: {advice} "
                                 "(TRAIN_MEMORY_CHECK=warn runs it anyway)")  # fmt: skip
    logger.warning("memory is tight:\n%s\nIf it runs out: %s", report, advice)
    return verdict


def out_of_memory_report(config: JobConfig) -> str:
    """What to print when a training process runs out of memory: the estimate, what was measured, the advice."""
    measured = f"Measured: {PeakWatch.process_peak()}. "
    generic = "Lower the batch size, or use LoRA, 4-bit or ZeRO-3"
    try:
        verdict = assess(config)
    except (OSError, ValueError, KeyError) as error:
        return f"{measured}No estimate ({error}). {generic}"
    if verdict is None:
        return f"{measured}No estimate (the weights are not safetensors). {generic}"
    report = "\n".join(verdict.lines())
    return f"{report}\n{measured}Cheapest fix: {cheapest_fix(verdict)}"


def _export(verdict: Verdict) -> None:
    from jobs.monitor import lifecycle as monitor

    if monitor.enabled():
        monitor.job_metrics().memory_estimate.set(verdict.estimate.total)


def _status_kib(field: str) -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class PeakWatch:
    """The measured peak of this training process above what it held before the model loaded: the figure
    the estimate predicts (torch's reserved bytes on a GPU, resident memory on CPU)."""

    def __init__(self) -> None:
        self.gpu = False
        self.baseline = self._resident_peak()

    @staticmethod
    def _resident_peak() -> int:
        """VmHWM: this program's peak since its exec (getrusage's maxrss would include the memory of the
        process it was forked from)."""
        return _status_kib("VmHWM") * 1024

    @staticmethod
    def _resident_now() -> int:
        return _status_kib("VmRSS") * 1024

    def start(self) -> None:
        """Call just before the model loads."""
        import torch

        self.gpu = torch.cuda.is_available()
        self.baseline = 0 if self.gpu else self._resident_now()

    @staticmethod
    def process_peak() -> str:
        """This process's whole peak, in words: torch's reserved GPU bytes, else its resident memory."""
        import torch

        if torch.cuda.is_available():
            peak = max(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count()))
            return f"peak {peak / 1e9:.2f} GB reserved by torch on a GPU"
        return f"peak resident memory {PeakWatch._resident_peak() / 1e9:.2f} GB"

    def log_summary(self, config: JobConfig) -> None:
        """The measured peak beside the estimate, at the end of training (figures as JSON log fields)."""
        peak = self.peak()
        where = (
            "reserved by torch on the GPU"
            if self.gpu
            else (f"resident, above the {human_size(self.baseline)} held before the model loaded")
        )
        try:
            verdict = assess(config)
        except (OSError, ValueError, KeyError, TypeError):  # preflight reported these; the peak still counts
            verdict = None
        estimate = verdict.estimate.total if verdict else None
        compared = f"; estimated {human_size(estimate)} ({peak / estimate:.2f}x)" if estimate else ""
        fields = {"memory_peak_bytes": peak, "memory_baseline_bytes": self.baseline, "memory_estimate_bytes": estimate}
        logger.info("memory: peak %s %s%s", human_size(peak), where, compared, extra=fields)

    def peak(self) -> int:
        if self.gpu:
            import torch

            return max(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count()))
        return max(0, self._resident_peak() - self.baseline)
