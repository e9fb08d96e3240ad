"""The failure shape: how an error travels in commands, frames and history events.

A failure is ``{"type", "message", "stack", "details", "non_retryable"}`` (``Failure``). Workers
build one from an exception (``sdk._errors.failure_from_exception``); the engine passes whatever
a worker sent through ``normalize_failure`` before it stores it, so stored failures always have
every key and bounded strings.

Code passes failures around as ``WireFailure``, a plain JSON object, because that is what
frames decode to and what the engine stores; ``Failure`` is the shape such an object has once
normalized, and what docs/protocol.md documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeAlias, TypedDict

from sdk.protocol.limits import (
    MAX_FAILURE_MESSAGE_LENGTH,
    MAX_FAILURE_STACK_LENGTH,
    MAX_FAILURE_TYPE_LENGTH,
)
from sdk.protocol.payloads import JSONObject, JSONValue

__all__ = ["FAILURE_FIELDS", "Failure", "WireFailure", "normalize_failure"]

WireFailure: TypeAlias = JSONObject
"""A failure as it travels: a JSON object of the ``Failure`` shape (once normalized)."""


class Failure(TypedDict):
    """An error, as the engine stores it and workers receive it."""

    type: str
    message: str
    stack: str
    details: JSONValue
    non_retryable: bool


# What each key holds, for the generated table in docs/protocol.md.
FAILURE_FIELDS: dict[str, str] = {
    "type": "the error's type (an exception class name, or `ApplicationError`'s `type`); "
            "`Error` when empty; what `non_retryable_error_types` matches",
    "message": "the error's message",
    "stack": "the formatted traceback, or empty",
    "details": "JSON details the code attached, or null",
    "non_retryable": "true stops an activity's retries at once",
}


def normalize_failure(failure: Mapping[str, Any]) -> WireFailure:
    """A failure object with the documented keys, strings clipped to the limits."""

    def text(key: str, limit: int) -> str:
        value = failure.get(key)
        return (value if isinstance(value, str) else "" if value is None else str(value))[:limit]

    normalized: Failure = {
        "type": text("type", MAX_FAILURE_TYPE_LENGTH) or "Error",
        "message": text("message", MAX_FAILURE_MESSAGE_LENGTH),
        "stack": text("stack", MAX_FAILURE_STACK_LENGTH),
        "details": failure.get("details"),
        "non_retryable": bool(failure.get("non_retryable", False)),
    }
    return dict(normalized)
