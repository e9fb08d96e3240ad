"""Structured log lines: one JSON object per record, with sched's context fields."""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime

# Fields a caller may attach with ``logger.info(..., extra={...})``.
CONTEXT_FIELDS = ("component", "workflow_id", "run_id", "worker_id", "task_queue", "event")


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)
