"""Will the run fit: the memory estimate (jobs/estimate/formula.py) against the memory this machine has,
checked before the model loads. (The measured peak beside it, once training runs: jobs/train/guards/peak_memory.py.)

On a GPU the budget is one device's memory (each process has its own). On CPU it is the smaller of the
container's cgroup limit (a pod's `resources.limits.memory`) and the host's RAM, shared by every process
of the job on this machine. Above REFUSE_ABOVE of it the job refuses (exit 4) with the breakdown and the
cheapest change that fits; above WARN_ABOVE it warns. TRAIN_MEMORY_CHECK=warn or off overrides the
refusal, for a model whose shape the estimate misreads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from jobs.config.defaults import visible_gpus
from jobs.config.resolved import MemoryFigures, ResolvedRun
from jobs.errors import EnvironmentProblem
from jobs.estimate.formula import MemoryEstimate, ModelShape, Plan, Tensor, estimate_memory, human_size, read_tensors
from jobs.methods import METHODS
from jobs.monitor import writer

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


def budget_for(plan: Plan, processes_here: int) -> Budget:
    gpus = visible_gpus() if plan.gpu else []
    if gpus:
        return Budget(
            gpus[0].memory_bytes - CUDA_CONTEXT,
            f"GPU 0 ({gpus[0].name}) less {CUDA_CONTEXT / 2**30:.2f} GiB for CUDA",
            1,
        )
    return host_budget(processes_here)


def host_budget(processes: int = 1) -> Budget:
    """The memory of this machine's CPUs: the smaller of the container's cgroup limit and the host's RAM."""
    import psutil

    ram = int(psutil.virtual_memory().total)
    limit = cgroup_limit()
    if limit is not None and limit < ram:
        return Budget(limit, "the container's memory limit (cgroup memory.max)", processes)
    return Budget(ram, "host RAM", processes)


def plan_for(run: ResolvedRun) -> Plan:
    """The run's memory-relevant settings as it will train (the job's defaults, then TRL's)."""
    method = METHODS[run.method]
    lora = bool(run.model_setting("use_peft"))
    bits = next((bits for bits in ("4bit", "8bit") if run.model_setting(f"load_in_{bits}")), None)
    return Plan(
        gpu=run.device.gpu,
        weight_dtype=str(run.model_setting("dtype")),  # the job's default for the device, if not the user's
        quantization=bits,
        lora_rank=int(run.model_setting("lora_r")) if lora else None,
        # TRL's disable_dropout (DPO, KTO) zeroes every nn.Dropout, LoRA's included
        lora_dropout=0.0 if run.setting("disable_dropout") else float(run.model_setting("lora_dropout") or 0.0),
        batch_size=int(run.setting("per_device_train_batch_size")),
        max_length=int(run.setting("max_length") or 1024),  # no limit: sized at TRL's usual 1024
        sequences_per_example=method.sequences_per_example,
        reference_model=method.reference_model,
        precomputed_reference=bool(run.setting("precompute_ref_log_probs")),
        activation_checkpointing=bool(run.setting("activation_checkpointing") or run.setting("gradient_checkpointing")),
        attention=str(run.model_setting("attn_implementation") or "sdpa"),  # unset: transformers' SDPA
        optimizer=str(run.setting("optim")),
        zero_stage=run.zero_stage,
        processes=run.processes,
        offload_optimizer=run.offload_optimizer,
    )


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


def assess(run: ResolvedRun) -> Verdict | None:
    """The run's estimate against this machine's memory; None when the weights are not safetensors."""
    model = Model.read(str(run.model["model_name_or_path"]))
    if model is None:
        return None
    plan = plan_for(run)
    return model.verdict(plan, budget_for(plan, run.processes_per_machine))


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


def check_memory(run: ResolvedRun) -> MemoryFigures | None:
    """Refuse (exit 4) a run whose estimate exceeds REFUSE_ABOVE of the memory, warn above WARN_ABOVE; the
    figures a training process compares its peak with, or reports when it runs out of memory."""
    mode = run.job.memory_check
    if mode == "off":
        return None
    verdict = assess(run)
    if verdict is None:
        logger.warning("memory not estimated: the weights are not safetensors")
        return None
    if writer.enabled():
        writer.job_metrics().memory_estimate.set(verdict.estimate.total)
    figures = MemoryFigures(int(verdict.estimate.total), tuple(verdict.lines()), cheapest_fix(verdict))
    if verdict.fraction <= WARN_ABOVE:
        logger.info("memory estimate: %s of %s (%.0f%%; `entrypoint.py estimate` shows the breakdown)",
                    human_size(verdict.needed), human_size(verdict.budget.bytes), 100 * verdict.fraction)  # fmt: skip
        return figures
    report = "\n".join(figures.breakdown)
    if verdict.fraction > REFUSE_ABOVE and mode == "refuse":
        raise EnvironmentProblem(f"this run would run out of memory:\n{report}\nCheapest fix: {figures.cheapest_fix} "
                                 "(TRAIN_MEMORY_CHECK=warn runs it anyway)")  # fmt: skip
    logger.warning("memory is tight:\n%s\nIf it runs out: %s", report, figures.cheapest_fix)
    return figures
