"""A training process under `accelerate launch`: the run the parent resolved, trained, its outcome recorded.

    python -m jobs.launch.worker    # what `accelerate launch` starts on every rank (jobs/launch/launcher.py)

Each rank reads the resolved run from TRAINJOB_RUN (jobs/config/resolved.py), never the TRAIN_* variables:
nothing is worked out twice. It trains, and writes its exit code to the output directory, so the launcher
can report the real cause rather than the elastic launcher's generic 1.
"""

from __future__ import annotations

import json
import os
import sys

from jobs.config.resolved import RUN_VARIABLE, ResolvedRun
from jobs.errors import EXIT_CRASH, ConfigError, exit_code_of
from jobs.layout import OutputLayout
from jobs.logs import log_to_file, setup_logging


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
    setup_logging()  # until the run says its format, for a failure to read it
    try:
        run = ResolvedRun.from_json(os.environ[RUN_VARIABLE])
    except (KeyError, ValueError, TypeError) as error:
        unreadable = ConfigError(f"{RUN_VARIABLE} does not hold a run ({error!r}): training processes are started "
                                 "by `python entrypoint.py`, which resolves the run and launches them")  # fmt: skip
        sys.exit(exit_code_of(unreadable))
    setup_logging(run.job.log_format)
    log_to_file(run.layout.log_file)
    try:
        from jobs.train.run import train

        train(run)
        code = 0
    except Exception as error:
        code = exit_code_of(error)
    record_rank_outcome(run.layout, code)
    sys.exit(code)


if __name__ == "__main__":
    main()
