"""The job's exit codes and error types: one table, one error class per code that a user must act on, and
the one place where an exception becomes an exit code (`exit_code_of`).

`EXIT_CODES` is the one source of the contract with Kubernetes. The README's table, the entrypoint's
docstring and the Job's podFailurePolicy are checked against it by a test, so a code is listed only
once something really exits with it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ExitCode:
    code: int
    meaning: str
    retry: bool  # whether a new pod may help: a Job retries it, or fails at once (podFailurePolicy)


EXIT_CRASH = 1
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_ENVIRONMENT = 4
EXIT_OUT_OF_MEMORY = 5
EXIT_DIVERGED = 6
EXIT_BUSY = 7
EXIT_STALLED = 8
EXIT_NOT_PUBLISHED = 9
EXIT_TERMINATED = 143  # 128 + SIGTERM, what a shell reports for a process the signal ended

EXIT_CODES: tuple[ExitCode, ...] = (
    ExitCode(0, "finished, final model saved", retry=False),
    ExitCode(EXIT_CRASH, "unexpected crash (a retry resumes from the last complete checkpoint)", retry=True),
    ExitCode(EXIT_CONFIG, "configuration error", retry=False),
    ExitCode(EXIT_DATA, "data error (schema, semantics, leakage)", retry=False),
    ExitCode(
        EXIT_ENVIRONMENT,
        "environment error: model or data path missing/unreadable, output not writable, disk too small or the "
        "output volume full during training, "
        "not enough memory for the estimated peak",
        retry=False,
    ),
    ExitCode(EXIT_OUT_OF_MEMORY, "out of memory during training (the message shows the estimate)", retry=False),
    ExitCode(EXIT_DIVERGED, "training diverged: the loss or gradient norm stayed non-finite", retry=False),
    ExitCode(
        EXIT_BUSY,
        "another job holds the output directory (its lease names it); retried: it may be a pod still saving",
        retry=True,
    ),
    ExitCode(
        EXIT_STALLED,
        "a training rank stopped finishing steps for TRAIN_STALL_TIMEOUT (the log names it); the group was ended, "
        "retried: the restart resumes",
        retry=True,
    ),
    ExitCode(
        EXIT_NOT_PUBLISHED,
        "the staged final model (or its merged copy) does not reload from disk, or computes other logits than "
        "training (or the adapter) did; the previous final/ (or final/merged/) is unchanged",
        retry=False,
    ),
    ExitCode(EXIT_TERMINATED, "stopped by SIGTERM or Ctrl-C after writing a complete checkpoint", retry=True),
)


class JobError(Exception):
    """An expected failure: reported as its message alone (no traceback) and mapped to an exit code."""

    exit_code = EXIT_CRASH
    kind = "error"

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []

    def report(self) -> str:
        """The message plus one indented line per problem, as a user should read it."""
        lines = [str(self)] + [f"  - {problem}" for problem in self.problems]
        return "\n".join(lines)


class ConfigError(JobError):
    """A TRAIN_* variable is unknown, malformed, out of range or contradicts another one."""

    exit_code = EXIT_CONFIG
    kind = "configuration error"


class DataError(JobError):
    """The training data is unreadable, breaks its schema or semantics, or leaks into eval."""

    exit_code = EXIT_DATA
    kind = "data error"


class EnvironmentProblem(JobError):
    """The machine cannot run the job: model missing, output not writable, too little disk or memory."""

    exit_code = EXIT_ENVIRONMENT
    kind = "environment error"


class OutOfMemory(JobError):
    """A training process ran out of device or host memory; the message carries the estimate and the fix."""

    exit_code = EXIT_OUT_OF_MEMORY
    kind = "out of memory"


class TrainingDiverged(JobError):
    """The loss or gradient norm stayed non-finite, or the weights to publish hold non-finite values."""

    exit_code = EXIT_DIVERGED
    kind = "training diverged"


class WriterBusy(JobError):
    """Another live job holds the output directory's lease (jobs/preflight/lease.py), or took it over."""

    exit_code = EXIT_BUSY
    kind = "output directory busy"


class NotPublished(JobError):
    """The staged final model, or its merged copy, failed its reload check (jobs/release/reload.py,
    jobs/release/merge.py); nothing was published."""

    exit_code = EXIT_NOT_PUBLISHED
    kind = "final model not published"


class TerminatedBySignal(JobError):
    """SIGTERM or SIGINT asked the job to stop; a complete checkpoint was written first."""

    exit_code = EXIT_TERMINATED
    kind = "stopped"


def exit_code_of(error: Exception) -> int:
    """The one place where an exception becomes an exit code, logged as a user should read it: an expected
    failure by its message alone and its own code; anything else as a crash with its traceback (exit 1,
    which a retry resumes from the last complete checkpoint)."""
    if isinstance(error, JobError):
        logger.error("%s: %s", error.kind, error.report())
        return error.exit_code
    logger.error("unexpected crash", exc_info=error)
    return EXIT_CRASH
