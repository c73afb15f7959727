"""The job's one entrypoint: read TRAIN_* config, preflight, launch, map the outcome to an exit code.

    python entrypoint.py            # validate, then train (TRAIN_METHOD: see --help)
    python entrypoint.py validate   # config and data checks only; writes validation_report.json
    python entrypoint.py estimate   # the peak memory of a training process, against this machine's
    python entrypoint.py merge OUTPUT_DIR   # a finished LoRA run's final/merged/ (as TRAIN_MERGE_ADAPTER)
    python entrypoint.py --help     # every TRAIN_* variable with type, default and help

Exit codes: 0 finished, 1 crash (a retry resumes), 2 configuration, 3 data, 4 environment,
5 out of device memory, 6 diverged, 7 another job holds the output directory (a retry waits for it),
8 a training rank stalled (a retry resumes), 9 the staged final model or its merged copy failed its reload check,
143 stopped by SIGTERM or Ctrl-C after a complete checkpoint.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import TYPE_CHECKING

from jobs.errors import exit_code_of
from jobs.monitor import lifecycle as exporter_process
from jobs.monitor import writer

if TYPE_CHECKING:
    from jobs.config.resolved import ResolvedRun
    from jobs.config.settings import JobConfig
    from jobs.preflight.lease import Lease

logger = logging.getLogger("jobs.entrypoint")


def parse_args(argv: list[str]) -> argparse.Namespace:
    epilog = None
    if {"-h", "--help"} & set(argv):  # the reference probes the device: only when it is shown
        from jobs.config.reference import render_reference

        epilog = "Environment variables:" + render_reference()
    parser = argparse.ArgumentParser(
        prog="entrypoint.py", description=__doc__, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", nargs="?", choices=["train", "validate", "estimate", "merge"], default="train")
    parser.add_argument("output_dir", nargs="?", help="merge: the finished run's output directory")
    return parser.parse_args(argv)


def estimate(run: ResolvedRun) -> int:
    """Print the memory breakdown; exit 4 where training would be refused."""
    from jobs.errors import EXIT_ENVIRONMENT, EnvironmentProblem
    from jobs.estimate.memory import REFUSE_ABOVE, assess, cheapest_fix
    from jobs.preflight.checks import check_model_dir

    model_path = run.model.get("model_name_or_path")
    check_model_dir(model_path)
    verdict = assess(run)
    if verdict is None:
        raise EnvironmentProblem(f"no estimate: {model_path} has no safetensors weights, whose headers it reads")
    report = verdict.lines()  # the command's output: stdout, not the log
    if verdict.fraction > REFUSE_ABOVE:
        report.append(f"training would be refused (exit {EXIT_ENVIRONMENT}); cheapest fix: {cheapest_fix(verdict)}")
    sys.stdout.write("\n".join(report) + "\n")
    sys.stdout.flush()  # before the log's last line on stderr
    if verdict.fraction > REFUSE_ABOVE:
        return EXIT_ENVIRONMENT
    return 0


def run_command(config: JobConfig, command: str) -> int:
    """config -> the resolved run -> preflight -> launch, as far as the command goes; its exit code."""
    from jobs.config.resolved import resolve

    run = resolve(config)
    if command == "estimate":
        return estimate(run)
    from jobs.logs import log_to_file
    from jobs.preflight.checks import check_output_dir
    from jobs.preflight.run import run_preflight

    if config.ignored_service_links:
        logger.warning(
            "ignored Kubernetes service-link variables %s; set enableServiceLinks: false in the pod spec",
            ", ".join(config.ignored_service_links),
        )
    check_output_dir(config.output_dir)
    lease = take_lease(config)  # before this job writes anything into the output directory
    try:
        log_to_file(config.layout.log_file)
        run = run_preflight(run, for_training=command == "train")
        if command == "validate":
            return 0
        from jobs.launch.launcher import launch

        writer.start_loading(run.loading_seconds)
        code = launch(run)
        if code == 0 and config.topology.is_main_machine:  # world rank 0 staged final.partial/ on machine 0
            from jobs.release.reload import check_and_publish

            check_and_publish(run)
            if run.job.merge_adapter:
                from jobs.release.merge import merge_final

                merge_final(run.layout.final, str(run.model["model_name_or_path"]), run.job.memory_check)
        return code
    finally:
        if lease is not None:
            lease.release()


def merge(output_dir: str | None) -> int:
    """`entrypoint.py merge OUTPUT_DIR`: final/merged/ for a finished LoRA run, by the code TRAIN_MERGE_ADAPTER
    runs (jobs/release/merge.py); the base is the one the adapter names, or TRAIN_MODEL_NAME_OR_PATH."""
    import uuid
    from pathlib import Path

    from jobs.config.settings import JobSettings
    from jobs.errors import EXIT_BUSY, ConfigError
    from jobs.launch.launcher import stop_at_once
    from jobs.layout import OutputLayout
    from jobs.preflight.lease import acquire
    from jobs.release.merge import merge_final

    if not output_dir or not Path(output_dir).is_dir():
        raise ConfigError(f"`entrypoint.py merge OUTPUT_DIR` needs a finished run's output directory: {output_dir!r}")
    memory_check = os.environ.get("TRAIN_MEMORY_CHECK", JobSettings.memory_check)
    if memory_check not in ("refuse", "warn", "off"):
        raise ConfigError(f"TRAIN_MEMORY_CHECK={memory_check!r}: expected refuse, warn or off")
    lease = acquire(Path(output_dir), f"merge-{uuid.uuid4().hex[:12]}", JobSettings.lock_stale_seconds,
                    on_lost=lambda reason: stop_at_once(reason, EXIT_BUSY))  # fmt: skip
    try:
        merge_final(OutputLayout(Path(output_dir)).final, os.environ.get("TRAIN_MODEL_NAME_OR_PATH") or None,
                    memory_check)  # fmt: skip
    finally:
        lease.release()
    return 0


def take_lease(config: JobConfig) -> Lease | None:
    """The output directory's lease (jobs/preflight/lease.py), taken once per run, by machine 0."""
    if not config.topology.is_main_machine:
        return None
    from jobs.errors import EXIT_BUSY
    from jobs.launch.launcher import stop_at_once
    from jobs.preflight.lease import acquire

    return acquire(config.output_dir, config.run_id, config.job.lock_stale_seconds,
                   on_lost=lambda reason: stop_at_once(reason, EXIT_BUSY))  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    from jobs.config.settings import load_config
    from jobs.logs import setup_logging

    setup_logging()
    config, exporter = None, None
    try:
        if args.command == "merge":
            code = merge(args.output_dir)
        else:
            config = load_config(os.environ, require_data=args.command != "estimate")
            if args.command == "train":
                exporter = exporter_process.start(config)
            code = run_command(config, args.command)
    except Exception as error:
        code = exit_code_of(error)
    logger.log(logging.INFO if code == 0 else logging.ERROR, "exit code %d", code)
    if config is not None:
        exporter_process.finish(exporter, config, code)
    return code


def exit_now(code: int) -> None:
    """End the process once everything is written: the exit handlers run (logging flushes its files), then
    the interpreter's teardown is skipped. Tearing down torch, transformers and datasets module by module
    took 1.4 s after a demo run's last line, and teardown is where NCCL and dataloader threads hang a job
    that has finished; the final model, checkpoints and logs are already closed by then. Under a profiler
    (`python -m cProfile entrypoint.py`), which writes its output after the script returns, it exits the
    usual way."""
    import atexit

    if sys.getprofile() is not None:
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(code)


if __name__ == "__main__":
    exit_now(main())
