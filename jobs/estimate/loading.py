"""How long the time before the first step may take: exported for the loading alert, and the process
group's timeout.

Between preflight and the first step the job loads the model, TRL tokenises the data on the main process
(under `main_process_first`, while the other ranks wait at a barrier) and the ranks meet. Nothing reports
progress then, so the job says when that began and how long it may take (trainjob_loading_started_timestamp_seconds,
trainjob_loading_threshold_seconds); TrainJobLoadingTooLong fires past it. TRAIN_LOADING_TIMEOUT sets it;
otherwise it is derived from what preflight knows:

    LOADING_FLOOR_SECONDS + weight bytes / READ_BYTES_PER_SECOND + training records x SECONDS_PER_RECORD

- 600 s: imports, the rendezvous, a node pulling its image cache cold;
- 50 MB/s: the weights read from a slow network volume (a local NVMe reads them 40x faster);
- 10 ms a record: TRL tokenised 200k DPO records in 6-8 minutes on 2 CPUs here (2-2.4 ms a record,
  BENCHMARKS.md), with a 4x margin for longer records and slower machines.

The process group's timeout (TRL's `ddp_timeout`, transformers' default 30 minutes) bounds every
collective, the barrier where the other ranks wait for rank 0's tokenisation included: a long tokenisation
timed the others out (TRL #1519, LLaMA-Factory #2424). The job sets it to this threshold, at least 30
minutes, unless TRAIN_DDP_TIMEOUT is set. Once training runs, a rank that hangs is the stall guard's
(jobs/train/guards/stall.py), which acts within minutes, long before this timeout.
"""

from __future__ import annotations

from pathlib import Path

from jobs.estimate.formula import DTYPE_BYTES, read_tensors

LOADING_FLOOR_SECONDS = 600.0
READ_BYTES_PER_SECOND = 50e6
SECONDS_PER_RECORD = 0.010
PROCESS_GROUP_FLOOR_SECONDS = 1800  # transformers' own default ddp_timeout


def weight_bytes(model_dir: Path) -> int:
    """The bytes of the model's safetensors weights, from their headers (0: none to read)."""
    return sum(tensor.numel * DTYPE_BYTES.get(tensor.dtype, 4) for tensor in read_tensors(model_dir))


def loading_threshold(setting: float, model_dir: Path, records: int) -> float:
    if setting > 0:
        return setting
    return LOADING_FLOOR_SECONDS + weight_bytes(model_dir) / READ_BYTES_PER_SECOND + records * SECONDS_PER_RECORD


def process_group_timeout(threshold: float) -> int:
    return max(PROCESS_GROUP_FLOOR_SECONDS, int(threshold))
