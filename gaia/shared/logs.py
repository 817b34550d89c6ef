"""Structured logging: one JSON object per line, carrying the job fields bound to the record."""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path

JOB_FIELDS = ("job_id", "job_type", "attempt", "correlation_id", "span_id", "worker_id")


class JsonFormatter(logging.Formatter):
    """Formats a record as one JSON line; job fields passed via ``extra`` become top-level keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "ts": round(record.created, 6),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in (*JOB_FIELDS, "outcome", "duration", "error"):
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info:
            entry["traceback"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(
    level: str = "INFO", json_lines: bool = True, file: Path | None = None
) -> None:
    """Send logs to stderr (or ``file``), as JSON lines or plain text; replaces earlier handlers."""
    handler: logging.Handler
    if file is None:
        handler = logging.StreamHandler(sys.stderr)
    else:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8")
    if json_lines:
        handler.setFormatter(JsonFormatter())
    else:
        formatter = logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s")
        formatter.converter = time.gmtime
        handler.setFormatter(formatter)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
