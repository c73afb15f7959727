"""The job's one entrypoint: read TRAIN_* config, preflight, launch, map the outcome to an exit code.

    python entrypoint.py            # validate, then train (TRAIN_METHOD=sft|dpo)
    python entrypoint.py validate   # config and data checks only; writes validation_report.json
    python entrypoint.py --help     # every TRAIN_* variable with type, default and help

Exit codes: 0 done, 1 crash (retry resumes), 2 configuration, 3 data, 4 environment,
5 out of device memory, 6 diverged, 143 stopped by SIGTERM after a complete checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from jobs.errors import EXIT_CRASH, JobError
from jobs.monitor import lifecycle as monitor

if TYPE_CHECKING:
    from jobs.config import JobConfig

logger = logging.getLogger("jobs.entrypoint")


def parse_args(argv: list[str]) -> argparse.Namespace:
    from jobs.reference import render_reference

    parser = argparse.ArgumentParser(
        prog="entrypoint.py",
        description=__doc__,
        epilog="Environment variables:" + render_reference(),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("command", nargs="?", choices=["train", "validate"], default="train")
    return parser.parse_args(argv)


def run(config: JobConfig, command: str) -> int:
    from jobs.preflight import run_preflight

    if config.ignored_service_links:
        logger.warning(
            "ignored Kubernetes service-link variables %s; set enableServiceLinks: false in the pod spec",
            ", ".join(config.ignored_service_links),
        )
    run_preflight(config, for_training=command == "train")
    if command == "validate":
        return 0
    from jobs.launch import launch

    monitor.set_phase("loading")
    return launch(config)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from jobs.config import load_config
    from jobs.logs import setup_logging
    from jobs.manifest import RUN_ID

    setup_logging()
    os.environ["TRAINJOB_RUN_ID"] = RUN_ID  # every rank reports the same run
    config, exporter = None, None
    try:
        config = load_config(os.environ)
        if args.command == "train":
            exporter = monitor.start(config.job, str(config.model.get("model_name_or_path", "")), RUN_ID)
        code = run(config, args.command)
    except JobError as error:
        logger.error("%s: %s", error.kind, error.report())
        code = error.exit_code
    except Exception:
        logger.exception("unexpected crash")
        code = EXIT_CRASH
    logger.log(logging.INFO if code == 0 else logging.ERROR, "exit code %d", code)
    if config is not None:
        monitor.finish(exporter, config.job, code, RUN_ID)
    return code


if __name__ == "__main__":
    sys.exit(main())
