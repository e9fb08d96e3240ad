"""Errors the SDK raises, and the wire form of a failure.

A failure travels as ``{"type", "message", "stack", "details", "non_retryable"}``
(``sdk.protocol.Failure``, the shape the engine's ``normalize_failure`` keeps).
``failure_from_exception`` builds it from any exception; ``ApplicationError`` lets user code
choose the type, mark it non-retryable and attach JSON details.
"""

from __future__ import annotations

import traceback
from typing import Any

from sdk.protocol import WireFailure

__all__ = [
    "ActivityError",
    "ApplicationError",
    "ChildWorkflowError",
    "ContinueAsNewError",
    "NonDeterminismError",
    "SchedError",
    "WorkflowFailureError",
    "failure_from_exception",
]


class SchedError(Exception):
    """Base class of every error the SDK raises."""


class ApplicationError(SchedError):
    """An error raised on purpose by workflow or activity code.

    ``type`` (the class name unless given) is what retry policies' ``non_retryable_error_types``
    and callers match on; ``non_retryable=True`` stops activity retries at once.
    """

    def __init__(
        self,
        message: str,
        *,
        type: str | None = None,
        non_retryable: bool = False,
        details: Any = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = type or self.__class__.__name__
        self.non_retryable = non_retryable
        self.details = details


class ActivityError(SchedError):
    """An activity failed for good (retries exhausted, non-retryable, or timed out).

    ``failure`` is the failure the engine recorded; ``type`` and ``message`` are copied from it,
    ``attempt`` is the last attempt made and ``timeout_type`` names the timeout that expired
    (``"start_to_close"``, ...) or is None when the activity raised.
    """

    def __init__(
        self,
        failure: dict[str, Any],
        *,
        attempt: int | None = None,
        timeout_type: str | None = None,
        activity_type: str | None = None,
        seq: int | None = None,
    ) -> None:
        self.failure: dict[str, Any] = {
            "type": "Error", "message": "", "stack": "", "details": None, "non_retryable": False,
            **failure,
        }
        self.type: str = str(failure.get("type") or "Error")
        self.message: str = str(failure.get("message") or "")
        self.attempt = attempt
        self.timeout_type = timeout_type
        self.activity_type = activity_type
        self.seq = seq
        what = f"activity {activity_type!r}" if activity_type else "activity"
        how = f"timed out ({timeout_type})" if timeout_type else "failed"
        super().__init__(f"{what} {how}: {self.type}: {self.message}")


class NonDeterminismError(SchedError):
    """Replaying the workflow code did not reproduce the commands its history holds."""


class WorkflowFailureError(SchedError):
    """A workflow the client waited on did not complete (failed, canceled, terminated, ...)."""

    def __init__(self, status: str, failure: dict[str, Any] | None = None) -> None:
        self.status = status
        self.failure = failure
        if failure:
            kind, message = failure.get("type", "Error"), failure.get("message", "")
            text = f"workflow {status}: {kind}: {message}"
        else:
            text = f"workflow {status}"
        super().__init__(text)


class ChildWorkflowError(SchedError):
    """A child workflow did not complete: it ``failed``, was ``canceled``, ``terminated`` or
    ``timed_out``, or could not start (``start_failed``: its workflow id has an open run),
    or a signal to it could not be delivered (``signal_failed``).

    ``cause`` is the child's failure as the engine recorded it (``type``, ``message``, ...);
    ``workflow_id``, ``run_id`` and ``workflow_type`` name the child. Escaping the parent's
    code, it fails the parent's run, with the cause in the failure's ``details``.
    """

    def __init__(self, status: str, cause: dict[str, Any] | None = None, *,
                 workflow_id: str, run_id: str | None = None,
                 workflow_type: str | None = None) -> None:
        self.status = status
        self.cause: dict[str, Any] = {
            "type": "Error", "message": "", "stack": "", "details": None, "non_retryable": False,
            **(cause or {}),
        }
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.workflow_type = workflow_type
        what = f"child workflow {workflow_type!r} ({workflow_id!r})"
        super().__init__(f"{what} {status.replace('_', ' ')}: {self.cause['type']}: "
                         f"{self.cause['message']}")

    def details(self) -> dict[str, Any]:
        return {"status": self.status, "workflow_id": self.workflow_id, "run_id": self.run_id,
                "workflow_type": self.workflow_type, "cause": self.cause}


class ContinueAsNewError(BaseException):
    """Raised by ``ctx.continue_as_new``: the run closes and a new run of the same workflow id
    starts with ``input`` (of ``workflow_type`` on ``task_queue``, None: the same). A
    ``BaseException``, so ``except Exception`` in workflow code does not stop it."""

    def __init__(self, input: Any = None, *, workflow_type: str | None = None,
                 task_queue: str | None = None) -> None:
        super().__init__("the workflow continues as new")
        self.input = input
        self.workflow_type = workflow_type
        self.task_queue = task_queue


def failure_from_exception(exc: BaseException) -> WireFailure:
    """The wire failure for ``exc``: its type, message, formatted traceback and details."""
    if isinstance(exc, ChildWorkflowError):
        return {"type": "ChildWorkflowError", "message": str(exc), "stack": _stack(exc),
                "details": exc.details(), "non_retryable": False}
    if isinstance(exc, ApplicationError):
        return {
            "type": exc.type,
            "message": exc.message,
            "stack": _stack(exc),
            "details": exc.details,
            "non_retryable": exc.non_retryable,
        }
    return {
        "type": type(exc).__name__,
        "message": str(exc),
        "stack": _stack(exc),
        "details": None,
        "non_retryable": False,
    }


def _stack(exc: BaseException) -> str:
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
