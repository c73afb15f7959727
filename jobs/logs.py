"""Logging: plain lines for people, JSON lines for log pipelines (TRAIN_LOG_FORMAT), on stderr and in
the output directory's log file (appended across restarts).

While a progress bar is drawn in a terminal (jobs/train/guards/progress.py), the per-step lines it replaces stay
off the terminal (they still reach the log file) and every other line is printed above the bar.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from pathlib import Path
from typing import Any, ClassVar

# Attributes every LogRecord has; anything else was passed through `extra=` and belongs in the JSON line.
_STANDARD_ATTRIBUTES = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}
# `extra={STEP_LINE: True}` marks a per-step progress line, which a progress bar replaces on a terminal.
STEP_LINE = "step_line"


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the fields passed through `extra=` as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        extra = {k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES and k != STEP_LINE}
        entry.update(extra)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


class ConsoleHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """stderr; above the progress bar while one is drawn (`bar` is set by jobs/train/guards/progress.py)."""

    bar: ClassVar[Any] = None  # the active tqdm bar, if any

    def emit(self, record: logging.LogRecord) -> None:
        bar = ConsoleHandler.bar
        if bar is None:
            super().emit(record)
        elif not getattr(record, STEP_LINE, False):
            bar.write(self.format(record), file=self.stream)


def _formatter(log_format: str) -> logging.Formatter:
    if log_format == "json":
        return JsonFormatter()
    return logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S")


def setup_logging(log_format: str | None = None) -> None:
    """Route the job's and the libraries' logging to stderr in the chosen format; idempotent."""
    chosen = log_format or os.environ.get("TRAIN_LOG_FORMAT", "text")
    handler = ConsoleHandler(sys.stderr)
    handler.setFormatter(_formatter(chosen))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    logging.captureWarnings(True)  # library warnings become log lines in the same format
    # transformers 5 warns about its own internal use of the renamed gradient_checkpointing API.
    warnings.filterwarnings("ignore", message=r".*gradient_checkpointing.* is deprecated", category=FutureWarning)
    # Libraries that log a lot at INFO stay at WARNING; the job reports their progress itself.
    for noisy in ("transformers", "datasets", "accelerate", "torch", "httpx", "filelock"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # DeepSpeed warns "Setting accelerator to CPU" on every CPU import.
    logging.getLogger("DeepSpeed").setLevel(logging.ERROR)


def log_to_file(path: Path) -> None:
    """Append every log line to `path` as well, in the console's format (once per process)."""
    root = logging.getLogger()
    target = str(path.resolve())
    if any(isinstance(h, logging.FileHandler) and h.baseFilename == target for h in root.handlers):
        return
    handler = logging.FileHandler(path, mode="a", encoding="utf-8")
    console = next((h for h in root.handlers if isinstance(h, ConsoleHandler)), None)
    handler.setFormatter(console.formatter if console and console.formatter else _formatter("text"))
    root.addHandler(handler)
