"""Logging setup: plain lines for people, JSON lines for Kubernetes log pipelines (TRAIN_LOG_FORMAT)."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings
from typing import Any

# Attributes every LogRecord has; anything else was passed through `extra=` and belongs in the JSON line.
_STANDARD_ATTRIBUTES = set(logging.makeLogRecord({}).__dict__) | {"message", "asctime"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line, with the fields passed through `extra=` as top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update({k: v for k, v in record.__dict__.items() if k not in _STANDARD_ATTRIBUTES})
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(log_format: str | None = None) -> None:
    """Route the job's and the libraries' logging to stderr in the chosen format; idempotent."""
    chosen = log_format or os.environ.get("TRAIN_LOG_FORMAT", "text")
    handler = logging.StreamHandler(sys.stderr)
    if chosen == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s", "%H:%M:%S"))
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
