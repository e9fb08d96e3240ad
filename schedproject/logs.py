"""Structured log lines, as text or as one JSON object per record.

Every line names its ``component``: what the caller passed with ``extra={"component": ...}``,
else the logger's name without the ``sched.`` prefix (``sched.worker_socket`` ->
``worker_socket``; Django's and daphne's loggers keep their names). Where a run is known the
caller adds ``extra={"workflow_id": ..., "run_id": ...}``; both formats print them. When
tracing is on, a line logged inside a span carries its ``trace_id`` and ``span_id``.

Tokens never reach a line: a ``Bearer <token>`` in a message or an exception is masked, as a
last guard behind log calls that never pass one.
"""

from __future__ import annotations

import json
import logging
import re
from datetime import UTC, datetime

from . import tracing

# Fields a caller may attach with ``logger.info(..., extra={...})``.
CONTEXT_FIELDS = ("component", "workflow_id", "run_id", "worker_id", "task_queue", "event")
_BEARER = re.compile(r"(?i)(bearer\s+)[^\s'\",]+")


def component(record: logging.LogRecord) -> str:
    given = getattr(record, "component", None)
    if given:
        return str(given)
    return record.name.removeprefix("sched.")


def redact(text: str) -> str:
    return _BEARER.sub(r"\1[redacted]", text) if "earer" in text else text


def _fields(record: logging.LogRecord) -> dict[str, object]:
    fields: dict[str, object] = {"component": component(record)}
    for name in CONTEXT_FIELDS[1:]:
        value = getattr(record, name, None)
        if value is not None:
            fields[name] = value
    ids = tracing.current_ids()
    if ids is not None:
        fields["trace_id"], fields["span_id"] = ids
    return fields


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        line.update(_fields(record))
        if record.exc_info:
            line["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(line, default=str)


class TextFormatter(logging.Formatter):
    """``<time> <LEVEL> [<component>] <message> workflow_id=... run_id=...``"""

    def format(self, record: logging.LogRecord) -> str:
        fields = _fields(record)
        name = fields.pop("component")
        context = "".join(f" {key}={value}" for key, value in fields.items())
        line = (f"{self.formatTime(record)} {record.levelname} [{name}] "
                f"{record.getMessage()}{context}")
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        if record.stack_info:
            line += "\n" + self.formatStack(record.stack_info)
        return redact(line)
