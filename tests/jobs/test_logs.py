"""Logging: JSON lines carry the step's numbers as fields, for log pipelines."""

from __future__ import annotations

import json
import logging

from jobs.logs import JsonFormatter


def test_json_lines_carry_extra_fields() -> None:
    record = logging.makeLogRecord({"msg": "step %d", "args": (5,), "levelname": "INFO", "name": "jobs.train"})
    record.loss = 1.5
    line = json.loads(JsonFormatter().format(record))
    assert line["message"] == "step 5" and line["loss"] == 1.5 and line["level"] == "info"


def test_exceptions_are_kept_in_one_line() -> None:
    try:
        raise RuntimeError("boom")
    except RuntimeError:
        import sys

        record = logging.makeLogRecord({"msg": "crash", "exc_info": sys.exc_info()})
    line = JsonFormatter().format(record)
    assert "\n" not in line and "RuntimeError: boom" in json.loads(line)["exception"]
