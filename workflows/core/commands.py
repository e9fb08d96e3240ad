"""Commands: what a workflow task asks the engine to do.

A worker completes a workflow task with a list of commands (JSON objects with a ``kind``).
``parse_command`` turns one into a typed, validated dataclass or raises ``InvalidCommand``.
Durable calls carry ``seq``, the workflow's own sequence number for the call, which the engine
records in the command's event so replay matches calls to history by kind, seq and name.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

MAX_NAME_LENGTH = 255
MAX_DURATION_MS = 100 * 365 * 24 * 3600 * 1000  # a century


class InvalidCommand(ValueError):
    """A command that is malformed on its own, before any state is consulted."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how often a failed activity is tried again.

    Defaults follow Temporal: 1 s initial interval, doubling, capped at 100 x the initial
    interval, unlimited attempts (``maximum_attempts=0``).
    """

    initial_interval_ms: int = 1000
    backoff_coefficient: float = 2.0
    maximum_interval_ms: int | None = None
    maximum_attempts: int = 0
    non_retryable_error_types: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "initial_interval_ms": self.initial_interval_ms,
            "backoff_coefficient": self.backoff_coefficient,
            "maximum_interval_ms": self.maximum_interval_ms,
            "maximum_attempts": self.maximum_attempts,
            "non_retryable_error_types": list(self.non_retryable_error_types),
        }

    @classmethod
    def from_dict(cls, raw: Any) -> RetryPolicy:
        if raw is None:
            return cls()
        if not isinstance(raw, Mapping):
            raise InvalidCommand("retry_policy must be an object")
        initial = _int(raw, "initial_interval_ms", default=1000, minimum=1)
        coefficient = raw.get("backoff_coefficient", 2.0)
        if isinstance(coefficient, bool) or not isinstance(coefficient, int | float):
            raise InvalidCommand("retry_policy.backoff_coefficient must be a number")
        if not 1.0 <= float(coefficient) <= 100.0:
            raise InvalidCommand("retry_policy.backoff_coefficient must be between 1 and 100")
        maximum = raw.get("maximum_interval_ms")
        if maximum is not None:
            maximum = _int(raw, "maximum_interval_ms", minimum=initial)
        attempts = _int(raw, "maximum_attempts", default=0, minimum=0)
        types = raw.get("non_retryable_error_types", [])
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            raise InvalidCommand("retry_policy.non_retryable_error_types must be a list of strings")
        return cls(initial, float(coefficient), maximum, attempts, tuple(types))

    def backoff_ms(self, attempt: int) -> int:
        """The wait before attempt ``attempt + 1``, after attempt ``attempt`` failed."""
        cap = self.maximum_interval_ms or self.initial_interval_ms * 100
        growth = (attempt - 1) * math.log(self.backoff_coefficient)
        if growth >= math.log(cap / self.initial_interval_ms):
            return cap  # past the cap (and never computing a power that overflows)
        return int(min(self.initial_interval_ms * self.backoff_coefficient ** (attempt - 1), cap))


@dataclass(frozen=True, slots=True)
class ScheduleActivity:
    seq: int
    activity_type: str
    input: Any = None
    task_queue: str | None = None
    retry_policy: RetryPolicy = field(default_factory=RetryPolicy)
    schedule_to_close_ms: int | None = None
    schedule_to_start_ms: int | None = None
    start_to_close_ms: int | None = None
    heartbeat_ms: int | None = None
    kind: str = "schedule_activity"


@dataclass(frozen=True, slots=True)
class RequestCancelActivity:
    seq: int
    kind: str = "request_cancel_activity"


@dataclass(frozen=True, slots=True)
class StartTimer:
    seq: int
    duration_ms: int
    kind: str = "start_timer"


@dataclass(frozen=True, slots=True)
class CancelTimer:
    seq: int
    kind: str = "cancel_timer"


@dataclass(frozen=True, slots=True)
class RecordMarker:
    seq: int
    marker_name: str
    data: Any = None
    kind: str = "record_marker"


@dataclass(frozen=True, slots=True)
class CompleteWorkflow:
    result: Any = None
    kind: str = "complete_workflow"


@dataclass(frozen=True, slots=True)
class FailWorkflow:
    failure: dict[str, Any]
    kind: str = "fail_workflow"


@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    details: Any = None
    kind: str = "cancel_workflow"


@dataclass(frozen=True, slots=True)
class ContinueAsNew:
    input: Any = None
    workflow_type: str | None = None
    task_queue: str | None = None
    kind: str = "continue_as_new"


Command = (
    ScheduleActivity
    | RequestCancelActivity
    | StartTimer
    | CancelTimer
    | RecordMarker
    | CompleteWorkflow
    | FailWorkflow
    | CancelWorkflow
    | ContinueAsNew
)

TERMINAL_COMMANDS = (CompleteWorkflow, FailWorkflow, CancelWorkflow, ContinueAsNew)


def _int(raw: Mapping[str, Any], key: str, *, default: int | None = None,
         minimum: int = 0, maximum: int = MAX_DURATION_MS) -> int:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidCommand(f"{key} must be an integer")
    if not minimum <= value <= maximum:
        raise InvalidCommand(f"{key} must be between {minimum} and {maximum}")
    return value


def _optional_ms(raw: Mapping[str, Any], key: str) -> int | None:
    if raw.get(key) is None:
        return None
    return _int(raw, key, minimum=1)


def _name(raw: Mapping[str, Any], key: str, *, required: bool = True) -> str | None:
    value = raw.get(key)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value or len(value) > MAX_NAME_LENGTH:
        raise InvalidCommand(f"{key} must be a non-empty string of at most {MAX_NAME_LENGTH}")
    return value


def _seq(raw: Mapping[str, Any]) -> int:
    return _int(raw, "seq", minimum=1, maximum=2**31 - 1)


def _failure(raw: Mapping[str, Any]) -> dict[str, Any]:
    failure = raw.get("failure")
    if not isinstance(failure, Mapping):
        raise InvalidCommand("failure must be an object")
    return normalize_failure(failure)


def normalize_failure(failure: Mapping[str, Any]) -> dict[str, Any]:
    """A failure object with the documented keys, strings clipped to a sane size."""
    def text(key: str, limit: int) -> str:
        value = failure.get(key)
        return (value if isinstance(value, str) else "" if value is None else str(value))[:limit]

    return {
        "type": text("type", 255) or "Error",
        "message": text("message", 32_768),
        "stack": text("stack", 65_536),
        "details": failure.get("details"),
        "non_retryable": bool(failure.get("non_retryable", False)),
    }


_PARSERS: dict[str, Callable[[Mapping[str, Any]], Command]] = {
    "schedule_activity": lambda r: ScheduleActivity(
        seq=_seq(r),
        activity_type=_name(r, "activity_type") or "",
        input=r.get("input"),
        task_queue=_name(r, "task_queue", required=False),
        retry_policy=RetryPolicy.from_dict(r.get("retry_policy")),
        schedule_to_close_ms=_optional_ms(r, "schedule_to_close_ms"),
        schedule_to_start_ms=_optional_ms(r, "schedule_to_start_ms"),
        start_to_close_ms=_optional_ms(r, "start_to_close_ms"),
        heartbeat_ms=_optional_ms(r, "heartbeat_ms"),
    ),
    "request_cancel_activity": lambda r: RequestCancelActivity(seq=_seq(r)),
    "start_timer": lambda r: StartTimer(seq=_seq(r), duration_ms=_int(r, "duration_ms")),
    "cancel_timer": lambda r: CancelTimer(seq=_seq(r)),
    "record_marker": lambda r: RecordMarker(
        seq=_seq(r), marker_name=_name(r, "marker_name") or "", data=r.get("data")
    ),
    "complete_workflow": lambda r: CompleteWorkflow(result=r.get("result")),
    "fail_workflow": lambda r: FailWorkflow(failure=_failure(r)),
    "cancel_workflow": lambda r: CancelWorkflow(details=r.get("details")),
    "continue_as_new": lambda r: ContinueAsNew(
        input=r.get("input"),
        workflow_type=_name(r, "workflow_type", required=False),
        task_queue=_name(r, "task_queue", required=False),
    ),
}


def parse_command(raw: Any) -> Command:
    if not isinstance(raw, Mapping):
        raise InvalidCommand("a command must be an object")
    kind = raw.get("kind")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise InvalidCommand(f"unknown command kind: {kind!r}")
    return parser(raw)


def parse_commands(raw: Any) -> list[Command]:
    if not isinstance(raw, list):
        raise InvalidCommand("commands must be a list")
    return [parse_command(item) for item in raw]


def command_to_dict(command: Command) -> dict[str, Any]:
    """The wire form of a command (what the SDK sends)."""
    out: dict[str, Any] = {}
    for name in command.__slots__:
        value = getattr(command, name)
        out[name] = value.to_dict() if isinstance(value, RetryPolicy) else value
    return out
