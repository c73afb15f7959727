"""The memory of merging a LoRA adapter into its base model (jobs/release/merge.py), before anything loads.

The merge runs on the CPU of machine 0, after the training processes have exited, so the whole of this
machine's memory is its budget (the smaller of the cgroup limit and RAM: jobs/estimate/memory.py). At its
peak it holds:
- the base model in its own dtype, read from the safetensors headers (a QLoRA run's base too: the merge
  loads it unquantised), with the adapter merged into it in place;
- the adapter, in float32 as PEFT keeps it;
- one layer's update while it is merged (B @ A in float32, and the copy of the weight that PEFT's
  safe_merge checks for non-finite values before it replaces it);
- the shard being written: safetensors serialises a whole shard into one buffer before writing it;
- the runtime: torch, transformers and PEFT imported (0.39 GB resident, measured on CPU), and what the
  job's process held before, rounded up.
The check that reloads the merged copy runs after the first copy is freed, so it never holds two.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from jobs.errors import EnvironmentProblem
from jobs.estimate.formula import DTYPE_BYTES, LORA_BYTES, Tensor, human_size, lora_parameters, read_tensors
from jobs.estimate.memory import REFUSE_ABOVE, WARN_ABOVE, Budget, host_budget

logger = logging.getLogger(__name__)

RUNTIME_BYTES = 1 << 30
SHARD_INDEX = "model.safetensors.index.json"


@dataclass(frozen=True)
class MergeEstimate:
    """The peak memory of one merge, by part."""

    weights: int
    adapter: int
    layer_update: int
    shard: int
    runtime: int = RUNTIME_BYTES

    @property
    def total(self) -> int:
        return self.weights + self.adapter + self.layer_update + self.shard + self.runtime

    def lines(self, budget: Budget) -> list[str]:
        parts = (("base weights, its own dtype", self.weights), ("adapter, float32", self.adapter),
                 ("one layer's update", self.layer_update), ("shard being written", self.shard),
                 ("runtime", self.runtime))  # fmt: skip
        return [*(f"  {name}: {human_size(size)}" for name, size in parts),
                f"needs {human_size(self.total)} of {human_size(budget.bytes)} ({budget.source}): "
                f"{self.total / budget.bytes:.0%}"]  # fmt: skip


def shard_bytes(model_dir: Path) -> int:
    """The size of the base's largest weight file: the merged copy is written in shards of this size, so it
    is sharded as the base is (one file for a model in one file)."""
    return max((path.stat().st_size for path in model_dir.glob("*.safetensors")), default=0)


def weight_file_bytes(model_dir: Path) -> int:
    """What the model's safetensors files hold: the size of its merged copy, in the same dtype."""
    return sum(path.stat().st_size for path in model_dir.glob("*.safetensors"))


def planned_adapter_bytes(base_dir: Path, lora_rank: int) -> int:
    """The adapter a run will train, before it exists: LoRA of `lora_rank` on every linear layer, float32."""
    return lora_parameters(read_tensors(base_dir), lora_rank) * LORA_BYTES


def estimate_merge(base_dir: Path, adapter_bytes: int) -> MergeEstimate | None:
    """The merge's peak for the base in `base_dir` and an adapter of `adapter_bytes`; None when the base's
    weights are not safetensors (no headers to read)."""
    tensors = read_tensors(base_dir)
    if not tensors:
        return None
    weights = sum(t.numel * DTYPE_BYTES.get(t.dtype, 4) for t in tensors)
    largest: Tensor = max((t for t in tensors if t.is_linear), key=lambda t: t.numel, default=tensors[0])
    layer_update = largest.numel * (LORA_BYTES + DTYPE_BYTES.get(largest.dtype, 4))
    return MergeEstimate(weights, adapter_bytes, layer_update, min(shard_bytes(base_dir), weights))


def check_merge_memory(base_dir: Path, adapter_bytes: int, mode: str = "refuse") -> MergeEstimate | None:
    """Refuse (exit 4) a merge whose estimate exceeds REFUSE_ABOVE of this machine's memory, warn above
    WARN_ABOVE; `mode` is TRAIN_MEMORY_CHECK's (warn: only warn; off: no estimate)."""
    if mode == "off":
        return None
    estimate = estimate_merge(base_dir, adapter_bytes)
    if estimate is None:
        logger.warning("merge memory not estimated: %s holds no safetensors weights", base_dir)
        return None
    budget = host_budget()
    fraction = estimate.total / budget.bytes
    report = "\n".join([f"merging the adapter into {base_dir} on the CPU:", *estimate.lines(budget)])
    if fraction > REFUSE_ABOVE and mode == "refuse":
        raise EnvironmentProblem(
            f"the merge (TRAIN_MERGE_ADAPTER) would run out of memory:\n{report}\nGive the pod more memory "
            "(resources.limits.memory), or train without TRAIN_MERGE_ADAPTER and run `entrypoint.py merge "
            "OUTPUT_DIR` on a machine with more (TRAIN_MEMORY_CHECK=warn merges anyway)"
        )
    if fraction > WARN_ABOVE:
        logger.warning("memory is tight for the merge:\n%s", report)
    else:
        logger.info("merge memory estimate: %s of %s (%.0f%%)", human_size(estimate.total),
                    human_size(budget.bytes), 100 * fraction)  # fmt: skip
    return estimate
