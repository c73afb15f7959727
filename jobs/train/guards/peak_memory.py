"""The measured peak memory of a training process, beside preflight's estimate; running out of memory.

At the end of training the log compares the measured peak (resident memory above what the process held
before the model loaded; on a GPU, torch's reserved bytes) with the estimate preflight made in the parent
(jobs/estimate/memory.py). A training process that runs out of memory exits 5 with that estimate, the
measured peak and the cheapest fix.
"""

from __future__ import annotations

import logging

from jobs.config.resolved import ResolvedRun
from jobs.errors import OutOfMemory
from jobs.estimate.formula import human_size

logger = logging.getLogger(__name__)


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

    def log_summary(self, run: ResolvedRun) -> None:
        """The measured peak beside the estimate, at the end of training (figures as JSON log fields)."""
        peak = self.peak()
        where = (
            "reserved by torch on the GPU"
            if self.gpu
            else (f"resident, above the {human_size(self.baseline)} held before the model loaded")
        )
        estimate = run.memory.estimate_bytes if run.memory else None
        compared = f"; estimated {human_size(estimate)} ({peak / estimate:.2f}x)" if estimate else ""
        fields = {"memory_peak_bytes": peak, "memory_baseline_bytes": self.baseline, "memory_estimate_bytes": estimate}
        logger.info("memory: peak %s %s%s", human_size(peak), where, compared, extra=fields)

    def peak(self) -> int:
        if self.gpu:
            import torch

            return max(torch.cuda.max_memory_reserved(i) for i in range(torch.cuda.device_count()))
        return max(0, self._resident_peak() - self.baseline)


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    # CPU tensors that cannot be allocated raise a RuntimeError from torch's CPU allocator.
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or "CUDA out of memory" in text or "can't allocate memory" in text


def out_of_memory(error: BaseException, run: ResolvedRun) -> OutOfMemory:
    """The failure to report for a training process that ran out of memory: the estimate, what was measured,
    the advice."""
    measured = f"Measured: {PeakWatch.process_peak()}. "
    if run.memory is None:
        report = f"{measured}No estimate (TRAIN_MEMORY_CHECK=off, or the weights are not safetensors). Lower the " \
                 "batch size, or use LoRA, 4-bit or ZeRO-3"  # fmt: skip
    else:
        breakdown = "\n".join(run.memory.breakdown)
        report = f"{breakdown}\n{measured}Cheapest fix: {run.memory.cheapest_fix}"
    first_line = next(iter(str(error).splitlines()), type(error).__name__)
    return OutOfMemory(f"{first_line}\n{report}")
