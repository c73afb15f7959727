"""A training process's outcome: run the method, map what happened to an exit code, record it.

    python -m jobs.worker    # what `accelerate launch` starts on every rank (jobs/launch.py)

In a one-process job the entrypoint calls `run_worker` directly. Under `accelerate launch` each rank
reads the same TRAIN_* environment once, trains, and writes its exit code to the output directory,
so the launcher can report the real cause rather than the elastic launcher's generic 1.
"""

from __future__ import annotations

import json
import logging
import os
import sys

from jobs.config import JobConfig, load_config
from jobs.errors import EXIT_CRASH, EXIT_OUT_OF_MEMORY, JobError
from jobs.layout import OutputLayout
from jobs.logs import log_to_file, setup_logging
from jobs.methods import METHODS

logger = logging.getLogger("jobs.train")


def run_worker(config: JobConfig) -> int:
    """Train with the configured method in this process; the exit code of what happened."""
    from jobs.training import train

    try:
        train(config, METHODS[config.method])
    except JobError as error:
        logger.error("%s: %s", error.kind, error.report())
        return error.exit_code
    except Exception as error:
        if is_out_of_memory(error):
            from jobs.memory import out_of_memory_report

            logger.error("out of memory: %s\n%s", str(error).splitlines()[0], out_of_memory_report(config))
            return EXIT_OUT_OF_MEMORY
        logger.exception("unexpected crash")
        return EXIT_CRASH
    return 0


def is_out_of_memory(error: BaseException) -> bool:
    import torch

    # CPU tensors that cannot be allocated raise a RuntimeError from torch's CPU allocator.
    text = str(error)
    return isinstance(error, torch.OutOfMemoryError) or "CUDA out of memory" in text or "can't allocate memory" in text


def record_rank_outcome(layout: OutputLayout, exit_code: int) -> None:
    """This rank's exit code, for the launcher (RANK is set by the distributed launcher)."""
    layout.rank_status.mkdir(parents=True, exist_ok=True)
    path = layout.rank_status_file(os.environ.get("RANK", "0"))
    path.write_text(json.dumps({"exit_code": exit_code}), encoding="utf-8")


def recorded_exit_code(layout: OutputLayout) -> int | None:
    """The job's exit code from its ranks' records: a specific cause outranks the crashes it led to."""
    codes = []
    for path in layout.rank_status.glob("rank-*.json"):
        try:
            codes.append(int(json.loads(path.read_text(encoding="utf-8"))["exit_code"]))
        except (OSError, ValueError, KeyError):
            continue
    specific = [code for code in codes if code not in (0, EXIT_CRASH)]
    if specific:
        return min(specific)  # the configuration/data/environment cause outranks its consequences
    return max(codes) if codes else None


def main() -> None:
    setup_logging()
    try:
        config = load_config(os.environ)
    except JobError as error:  # the entrypoint checked it already; only a changed environment gets here
        logger.error("%s: %s", error.kind, error.report())
        sys.exit(error.exit_code)
    log_to_file(config.layout.log_file)
    code = run_worker(config)
    record_rank_outcome(config.layout, code)
    sys.exit(code)


if __name__ == "__main__":
    main()
