"""The failure shape: how an error travels in commands, frames and history events.

A failure is ``{"type", "message", "stack", "details", "non_retryable", "cause"}``
(``Failure``); ``cause``, present only when there is one, is the failure that caused it (an
activity's failure under the ``ActivityError`` that failed a workflow, an exception's
``__cause__``), nested at most ``MAX_FAILURE_CAUSE_DEPTH`` deep. Workers
build one from an exception (``sdk._errors.failure_from_exception``); the engine passes whatever
a worker sent through ``normalize_failure`` before it stores it, so stored failures always have
every key and bounded strings.

Code passes failures around as ``WireFailure``, a plain JSON object, because that is what
frames decode to and what the engine stores; ``Failure`` is the shape such an object has once
normalized, and what docs/protocol.md documents.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, NotRequired, TypeAlias, TypedDict

from sdk.protocol.limits import (
    MAX_FAILURE_CAUSE_DEPTH,
    MAX_FAILURE_MESSAGE_LENGTH,
    MAX_FAILURE_STACK_LENGTH,
    MAX_FAILURE_TYPE_LENGTH,
)
from sdk.protocol.payloads import JSONObject, JSONValue

__all__ = ["FAILURE_FIELDS", "WORKFLOW_TASK_FAILURE_CAUSES", "Failure", "WireFailure",
           "failure_chain", "normalize_failure"]

WireFailure: TypeAlias = JSONObject
"""A failure as it travels: a JSON object of the ``Failure`` shape (once normalized)."""


class Failure(TypedDict):
    """An error, as the engine stores it and workers receive it."""

    type: str
    message: str
    stack: str
    details: JSONValue
    non_retryable: bool
    cause: NotRequired[Failure]


# What each key holds, for the generated table in docs/protocol.md.
FAILURE_FIELDS: dict[str, str] = {
    "type": "the error's type (an exception class name, or `ApplicationError`'s `type`); "
            "`Error` when empty; what `non_retryable_error_types` matches",
    "message": "the error's message",
    "stack": "the formatted traceback, or empty",
    "details": "JSON details the code attached, or null",
    "non_retryable": "true stops an activity's retries at once",
    "cause": "the failure that caused this one (the same shape); absent when there is "
             "none: the chain `ActivityError` → the activity's failure → its `__cause__`, at "
             "most `MAX_FAILURE_CAUSE_DEPTH` deep",
}


# Why a workflow task failed (``workflow_task_failed.cause``, ``WorkflowTaskFailed.cause``), for
# the generated table in docs/protocol.md. The engine stores any cause a worker sends; these
# are the ones sched's worker and engine use. Every failed task but ``unhandled_events`` is
# retried after a back-off, so the run stays open until code that can run it is deployed.
WORKFLOW_TASK_FAILURE_CAUSES: dict[str, str] = {
    "workflow_error": "the workflow code raised an exception that does not fail the run (not "
                      "an `ApplicationError`, `ActivityError` or one of the workflow's or "
                      "worker's `failure_exception_types`): a bug, fixed by a deploy",
    "deadlock_detected": "the workflow code did not yield for the worker's deadlock timeout "
                         "(2 s by default); the failure names where it was blocked",
    "nondeterminism": "the workflow code no longer issues the commands its history holds",
    "unknown_workflow_type": "the worker does not register the run's workflow type",
    "unknown_activity_type": "the worker does not register a local activity the code runs",
    "unserializable_commands": "the task's commands could not be encoded as JSON",
    "worker_error": "the worker failed outside the workflow code (a bug in the worker)",
    "unhandled_events": "written by the engine: news reached the run while a closing task ran; "
                        "the task runs again at once with the news",
}


def normalize_failure(failure: Mapping[str, Any]) -> WireFailure:
    """A failure object with the documented keys, strings clipped to the limits, its
    ``cause`` chain normalized too and cut below ``MAX_FAILURE_CAUSE_DEPTH``."""
    normalized: WireFailure | None = None
    for item in reversed(failure_chain(failure)):  # innermost first: iterative, so no recursion
        normalized = _normalize_one(item, normalized)
    assert normalized is not None
    return normalized


def _normalize_one(failure: Mapping[str, Any], cause: WireFailure | None) -> WireFailure:
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
    result: WireFailure = dict(normalized)
    if cause is not None:
        result["cause"] = cause
    return result


def failure_chain(failure: Mapping[str, Any] | None) -> list[Mapping[str, Any]]:
    """``failure`` and its causes, outermost first (at most ``MAX_FAILURE_CAUSE_DEPTH`` + 1)."""
    chain: list[Mapping[str, Any]] = []
    current: Any = failure
    while isinstance(current, Mapping) and len(chain) <= MAX_FAILURE_CAUSE_DEPTH:
        chain.append(current)
        current = current.get("cause")
    return chain
