"""The job's error types, one per exit code of the Kubernetes contract (DESIGN "Exit codes")."""

from __future__ import annotations

EXIT_OK = 0
EXIT_CRASH = 1
EXIT_CONFIG = 2
EXIT_DATA = 3
EXIT_ENVIRONMENT = 4
EXIT_OUT_OF_MEMORY = 5
EXIT_DIVERGED = 6
EXIT_TERMINATED = 143


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


class TrainingDiverged(JobError):
    """The loss stayed non-finite for too many consecutive steps."""

    exit_code = EXIT_DIVERGED
    kind = "training diverged"


class TerminatedBySignal(JobError):
    """SIGTERM arrived; a complete checkpoint was written before stopping."""

    exit_code = EXIT_TERMINATED
    kind = "terminated"
