"""Errors the SDK raises, and the wire form of a failure.

A failure travels as ``{"type", "message", "stack", "details", "non_retryable", "cause"}``
(``sdk.protocol.Failure``, the shape the engine's ``normalize_failure`` keeps).
``failure_from_exception`` builds it from any exception, its ``__cause__`` chain as nested
``cause`` failures (an ``ActivityError``'s cause is the activity's own failure);
``ApplicationError`` lets user code choose the type, mark it non-retryable and attach JSON
details. ``exception_from_failure`` rebuilds the chain on the way in: ``ActivityError`` for a
failure of type ``ActivityError``, ``ApplicationError`` for any other, each with ``.cause``
(also its ``__cause__``) set to the next one, so ``err.cause`` works in workflow code and on
``WorkflowFailureError``.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from typing import Any

from sdk.protocol import WireFailure
from sdk.protocol.limits import MAX_FAILURE_CAUSE_DEPTH

__all__ = [
    "ActivityError",
    "ApplicationError",
    "ChildWorkflowError",
    "ContinueAsNewError",
    "NonDeterminismError",
    "SchedError",
    "WorkflowFailureError",
    "exception_from_failure",
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
        self.stack = ""  # a rebuilt failure's original stack (exception_from_failure)

    @property
    def cause(self) -> BaseException | None:
        """The error that caused this one (``raise ApplicationError(...) from err``)."""
        return self.__cause__


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
        self.__cause__ = exception_from_failure(self.failure)

    @property
    def cause(self) -> BaseException | None:
        """The activity's own error, rebuilt from its failure (an ``ApplicationError``)."""
        return self.__cause__


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
        self.__cause__ = exception_from_failure(failure) if failure else None

    @property
    def cause(self) -> BaseException | None:
        """The workflow's error rebuilt from its failure (``ActivityError`` when an activity
        failure failed it, its own ``.cause`` the activity's ``ApplicationError``), or None."""
        return self.__cause__


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
    """The wire failure for ``exc``: its type, message, formatted traceback and details,
    and its ``__cause__`` chain as ``cause`` (at most ``MAX_FAILURE_CAUSE_DEPTH`` deep)."""
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and len(chain) <= MAX_FAILURE_CAUSE_DEPTH:
        if any(current is seen for seen in chain):
            break  # a cycle
        chain.append(current)
        if isinstance(current, ActivityError | ChildWorkflowError):
            break  # its cause is the activity's (the child's) failure, as recorded
        current = current.__cause__
    failure: WireFailure | None = None
    for item in reversed(chain):
        failure = _failure_of(item, failure)
    assert failure is not None
    return failure


def _failure_of(exc: BaseException, cause: WireFailure | None) -> WireFailure:
    if isinstance(exc, ChildWorkflowError):
        return {"type": "ChildWorkflowError", "message": str(exc), "stack": _stack(exc),
                "details": exc.details(), "non_retryable": False}
    if isinstance(exc, ActivityError):
        return {
            "type": "ActivityError",
            "message": str(exc),
            "stack": _stack(exc),
            "details": {"activity_type": exc.activity_type, "attempt": exc.attempt,
                        "timeout_type": exc.timeout_type},
            "non_retryable": False,
            "cause": dict(exc.failure),
        }
    failure: WireFailure
    if isinstance(exc, ApplicationError):
        failure = {
            "type": exc.type,
            "message": exc.message,
            "stack": exc.stack if exc.__traceback__ is None and exc.stack else _stack(exc),
            "details": exc.details,
            "non_retryable": exc.non_retryable,
        }
    else:
        failure = {
            "type": type(exc).__name__,
            "message": str(exc),
            "stack": _stack(exc),
            "details": None,
            "non_retryable": False,
        }
    if cause is not None:
        failure["cause"] = cause
    return failure


def exception_from_failure(failure: Mapping[str, Any]) -> SchedError:
    """The error a failure stands for, its ``cause`` chain rebuilt as ``__cause__`` (and
    ``.cause``): ``ActivityError`` for a failure of type ``ActivityError`` that has a cause
    (the activity's failure), ``ApplicationError`` for any other."""
    chain: list[Mapping[str, Any]] = []
    current: Any = failure
    while isinstance(current, Mapping) and len(chain) <= MAX_FAILURE_CAUSE_DEPTH:
        chain.append(current)
        if current.get("type") == "ActivityError" and isinstance(current.get("cause"), Mapping):
            break  # ActivityError rebuilds its own cause
        current = current.get("cause")
    error: SchedError | None = None
    for item in reversed(chain):
        error = _error_of(item, error)
    assert error is not None
    return error


def _error_of(failure: Mapping[str, Any], cause: SchedError | None) -> SchedError:
    inner = failure.get("cause")
    if failure.get("type") == "ActivityError" and isinstance(inner, Mapping):
        about = failure.get("details")
        about = about if isinstance(about, Mapping) else {}
        attempt = about.get("attempt")
        return ActivityError(
            dict(inner), attempt=attempt if isinstance(attempt, int) else None,
            timeout_type=_str_or_none(about.get("timeout_type")),
            activity_type=_str_or_none(about.get("activity_type")))
    error = ApplicationError(str(failure.get("message") or ""),
                             type=str(failure.get("type") or "Error"),
                             non_retryable=bool(failure.get("non_retryable")),
                             details=failure.get("details"))
    error.stack = str(failure.get("stack") or "")
    error.__cause__ = cause
    return error


def _str_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def _stack(exc: BaseException) -> str:
    """``exc``'s traceback, without its causes (they travel as ``cause`` failures)."""
    return "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, chain=False))
