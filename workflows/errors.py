"""sched's domain errors: one base, a stable machine code each.

The REST API maps them to HTTP statuses in one place (``workflows.api.errors``) and the
worker consumer to error frames in one place (``dispatch.consumers``).
"""

from __future__ import annotations

from typing import Any


class SchedError(Exception):
    code = "error"
    http_status = 400

    def __init__(self, message: str, *, code: str | None = None, **extra: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code
        self.extra = extra


class NotFound(SchedError):
    code = "not_found"
    http_status = 404


class Conflict(SchedError):
    """The request conflicts with the run's state (already started, closed, stale task)."""

    code = "conflict"
    http_status = 409


class InvalidInput(SchedError):
    code = "invalid_input"
    http_status = 422
