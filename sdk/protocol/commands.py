"""Commands: what a workflow task asks the engine to do, typed, parsed and encoded.

A worker completes a workflow task with a list of commands, JSON objects with a ``kind``. The
SDK builds them as the dataclasses below and sends ``encode_commands(...)``; the engine turns
what it receives back into the same dataclasses with ``parse_commands`` (validated, or
``InvalidCommand``), so ``parse_command(encode_command(cmd)) == cmd``. Durable calls carry
``seq``, the workflow's own sequence number for the call, which the engine records in the
command's event so replay matches calls to history by kind, seq and name.

``RetryPolicy`` here is the wire form, in milliseconds; ``sdk.RetryPolicy`` is what users
write (seconds) and converts itself to this one.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, NoReturn

from sdk.protocol.events import EventType
from sdk.protocol.failures import WireFailure, normalize_failure
from sdk.protocol.limits import (
    MAX_BACKOFF_COEFFICIENT,
    MAX_DURATION_MS,
    MAX_NAME_LENGTH,
    MAX_SEQ,
    MAX_UPDATE_ID_LENGTH,
    MAX_WORKFLOW_ID_LENGTH,
    MIN_BACKOFF_COEFFICIENT,
    MIN_SEQ,
)
from sdk.protocol.names import name_problem
from sdk.protocol.payloads import JSONObject, JSONValue, WireCommand

__all__ = [
    "COMMAND_CLASSES",
    "DEFAULT_RETRY_POLICY",
    "LOCAL_ACTIVITY_MARKER",
    "PARENT_CLOSE_POLICIES",
    "PATCH_MARKER",
    "TERMINAL_COMMANDS",
    "TERMINAL_KINDS",
    "CancelTimer",
    "CancelWorkflow",
    "Command",
    "CompleteUpdate",
    "CompleteWorkflow",
    "ContinueAsNew",
    "FailWorkflow",
    "InvalidCommand",
    "RecordMarker",
    "RequestCancelActivity",
    "RequestCancelExternalWorkflow",
    "RetryPolicy",
    "ScheduleActivity",
    "SignalExternalWorkflow",
    "StartChildWorkflow",
    "StartTimer",
    "encode_command",
    "encode_commands",
    "kind_of",
    "parse_command",
    "parse_commands",
]

E = EventType


class InvalidCommand(ValueError):
    """A command that is malformed on its own, before any state is consulted."""


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """When and how often a failed activity is tried again (milliseconds).

    Defaults follow Temporal: 1 s initial interval, doubling, capped at 100 x the initial
    interval, unlimited attempts (``maximum_attempts=0``). On the wire it is an object with
    these keys, each optional; an absent or null ``retry_policy`` is ``DEFAULT_RETRY_POLICY``.
    """

    initial_interval_ms: int = field(
        default=1000, metadata={"doc": "the wait after the first failed attempt"})
    backoff_coefficient: float = field(
        default=2.0, metadata={"doc": "each wait is the previous one times this"})
    maximum_interval_ms: int | None = field(
        default=None, metadata={"doc": "the longest wait; null: 100 times `initial_interval_ms`"})
    maximum_attempts: int = field(
        default=0, metadata={"doc": "attempts in all, the first one included; 0: unlimited"})
    non_retryable_error_types: tuple[str, ...] = field(
        default=(), metadata={"doc": "failure `type`s that fail the activity at once"})

    def to_dict(self) -> JSONObject:
        """The wire form, every key filled in (what ``ActivityTaskScheduled`` records)."""
        return {
            "initial_interval_ms": self.initial_interval_ms,
            "backoff_coefficient": self.backoff_coefficient,
            "maximum_interval_ms": self.maximum_interval_ms,
            "maximum_attempts": self.maximum_attempts,
            "non_retryable_error_types": list(self.non_retryable_error_types),
        }

    @classmethod
    def from_dict(cls, raw: Any) -> RetryPolicy:
        """Parse the wire form (None: the default policy); raises ``InvalidCommand``."""
        if raw is None:
            return DEFAULT_RETRY_POLICY
        if not isinstance(raw, Mapping):
            raise InvalidCommand("retry_policy must be an object")
        initial = _int(raw, "initial_interval_ms", default=1000, minimum=1)
        coefficient = raw.get("backoff_coefficient", 2.0)
        if isinstance(coefficient, bool) or not isinstance(coefficient, int | float):
            raise InvalidCommand("retry_policy.backoff_coefficient must be a number")
        if not MIN_BACKOFF_COEFFICIENT <= float(coefficient) <= MAX_BACKOFF_COEFFICIENT:
            raise InvalidCommand(
                "retry_policy.backoff_coefficient must be between "
                f"{MIN_BACKOFF_COEFFICIENT:g} and {MAX_BACKOFF_COEFFICIENT:g}"
            )
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


DEFAULT_RETRY_POLICY = RetryPolicy()
"""The policy of an activity scheduled without one. It is sent as ``null`` (the SDK's form
when the workflow gave no policy); any other instance, even an equal one, is sent in full."""


# ---- the commands ----------------------------------------------------------------------
# ``kind`` is a field (last, with its default) so a command's repr and equality include it;
# ``writes`` names the events it records, for docs/protocol.md.


@dataclass(frozen=True, slots=True)
class ScheduleActivity:
    """Run an activity; its outcome comes back as an event carrying ``seq``."""

    writes: ClassVar[tuple[EventType, ...]] = (E.ACTIVITY_TASK_SCHEDULED,)
    seq: int
    activity_type: str
    input: JSONValue = None
    task_queue: str | None = None
    retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY
    schedule_to_close_ms: int | None = None
    schedule_to_start_ms: int | None = None
    start_to_close_ms: int | None = None
    heartbeat_ms: int | None = None
    kind: str = "schedule_activity"


@dataclass(frozen=True, slots=True)
class RequestCancelActivity:
    """Cancel the activity scheduled with ``seq`` (nothing if it already finished)."""

    writes: ClassVar[tuple[EventType, ...]] = (E.ACTIVITY_TASK_CANCEL_REQUESTED,
                                               E.ACTIVITY_TASK_CANCELED)
    seq: int
    kind: str = "request_cancel_activity"


@dataclass(frozen=True, slots=True)
class StartTimer:
    """A durable timer of ``duration_ms`` (0 fires at once)."""

    writes: ClassVar[tuple[EventType, ...]] = (E.TIMER_STARTED,)
    seq: int
    duration_ms: int
    kind: str = "start_timer"


@dataclass(frozen=True, slots=True)
class CancelTimer:
    """Cancel the timer started with ``seq`` (nothing if it already fired)."""

    writes: ClassVar[tuple[EventType, ...]] = (E.TIMER_CANCELED,)
    seq: int
    kind: str = "cancel_timer"


LOCAL_ACTIVITY_MARKER = "local_activity"
"""The ``marker_name`` of a local activity's outcome. Its ``data`` is ``{"activity_type",
"attempts", "result"}`` when it succeeded, ``{"activity_type", "attempts", "failure",
"timeout_type"}`` when it failed for good (``timeout_type`` null unless a timeout ended it)."""

PATCH_MARKER = "patch"
"""The ``marker_name`` of a versioning patch (``ctx.patched`` / ``ctx.deprecate_patch``). Its
``data`` is ``{"patch_id", "deprecated"}``. Replay never requires it: code that no longer calls
``patched`` for it skips it (its ``seq`` too), code that calls ``patched`` where history lacks
it takes the old branch."""


@dataclass(frozen=True, slots=True)
class RecordMarker:
    """Record ``data`` in history under ``marker_name`` (side effects)."""

    writes: ClassVar[tuple[EventType, ...]] = (E.MARKER_RECORDED,)
    seq: int
    marker_name: str
    data: JSONValue = None
    kind: str = "record_marker"


@dataclass(frozen=True, slots=True)
class CompleteWorkflow:
    """Close the run with ``result``."""

    writes: ClassVar[tuple[EventType, ...]] = (E.WORKFLOW_EXECUTION_COMPLETED,)
    result: JSONValue = None
    kind: str = "complete_workflow"


@dataclass(frozen=True, slots=True)
class FailWorkflow:
    """Close the run as failed."""

    writes: ClassVar[tuple[EventType, ...]] = (E.WORKFLOW_EXECUTION_FAILED,)
    failure: WireFailure
    kind: str = "fail_workflow"


@dataclass(frozen=True, slots=True)
class CancelWorkflow:
    """Close the run as canceled (after a cancel request)."""

    writes: ClassVar[tuple[EventType, ...]] = (E.WORKFLOW_EXECUTION_CANCELED,)
    details: JSONValue = None
    kind: str = "cancel_workflow"


@dataclass(frozen=True, slots=True)
class ContinueAsNew:
    """Close the run and start a new one of the same workflow id with ``input``."""

    writes: ClassVar[tuple[EventType, ...]] = (E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW,)
    input: JSONValue = None
    workflow_type: str | None = None
    task_queue: str | None = None
    kind: str = "continue_as_new"


PARENT_CLOSE_POLICIES = ("terminate", "abandon", "request_cancel")
"""What the engine does to a child still running when its parent's run closes (completed,
failed, canceled, terminated, timed out or continued as new): terminate it, leave it, or
ask it to cancel."""


@dataclass(frozen=True, slots=True)
class StartChildWorkflow:
    """Start a child workflow ``workflow_id``; its start and its end come back as events
    carrying ``seq``."""

    writes: ClassVar[tuple[EventType, ...]] = (E.START_CHILD_WORKFLOW_EXECUTION_INITIATED,
                                               E.CHILD_WORKFLOW_EXECUTION_STARTED)
    seq: int
    workflow_type: str
    workflow_id: str
    input: JSONValue = None
    task_queue: str | None = None
    execution_timeout_ms: int | None = None
    parent_close_policy: str = "terminate"
    # None: a failed child is not retried; else the engine starts a new run of it after the
    # policy's back-off (the parent hears only of the last run).
    retry_policy: RetryPolicy | None = None
    kind: str = "start_child_workflow"


@dataclass(frozen=True, slots=True)
class SignalExternalWorkflow:
    """Signal the child ``workflow_id`` (its open run, or ``run_id``); whether it arrived
    comes back as an event carrying ``seq``."""

    writes: ClassVar[tuple[EventType, ...]] = (E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,)
    seq: int
    workflow_id: str
    signal_name: str
    input: JSONValue = None
    run_id: str | None = None
    kind: str = "signal_external_workflow"


@dataclass(frozen=True, slots=True)
class RequestCancelExternalWorkflow:
    """Ask the child ``workflow_id`` (its open run, or ``run_id``) to cancel."""

    writes: ClassVar[tuple[EventType, ...]] = (
        E.REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,)
    seq: int
    workflow_id: str
    run_id: str | None = None
    kind: str = "request_cancel_external_workflow"


@dataclass(frozen=True, slots=True)
class CompleteUpdate:
    """The handler of the accepted update ``update_id`` is done: it returned ``result``, or
    (``failure`` set) failed the update. The run goes on either way."""

    writes: ClassVar[tuple[EventType, ...]] = (E.WORKFLOW_EXECUTION_UPDATE_COMPLETED,)
    update_id: str
    result: JSONValue = None
    failure: WireFailure | None = None
    kind: str = "complete_update"


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
    | StartChildWorkflow
    | SignalExternalWorkflow
    | RequestCancelExternalWorkflow
    | CompleteUpdate
)

COMMAND_CLASSES: tuple[type[Command], ...] = (
    ScheduleActivity, RequestCancelActivity, StartTimer, CancelTimer, RecordMarker,
    CompleteWorkflow, FailWorkflow, CancelWorkflow, ContinueAsNew, StartChildWorkflow,
    SignalExternalWorkflow, RequestCancelExternalWorkflow, CompleteUpdate,
)
TERMINAL_COMMANDS = (CompleteWorkflow, FailWorkflow, CancelWorkflow, ContinueAsNew)
"""Commands that close the run: at most one per task, and the last."""


def kind_of(cls: type[Command]) -> str:
    """The wire ``kind`` of a command class."""
    kind = next(f.default for f in fields(cls) if f.name == "kind")
    assert isinstance(kind, str)
    return kind


TERMINAL_KINDS = frozenset(kind_of(cls) for cls in TERMINAL_COMMANDS)


# ---- parsing -----------------------------------------------------------------------------


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
    if not isinstance(value, str):
        raise InvalidCommand(f"{key} must be a non-empty string of at most {MAX_NAME_LENGTH}")
    problem = name_problem(value)
    if problem is not None:
        raise InvalidCommand(f"{key} {problem}")
    return value


def _workflow_id(raw: Mapping[str, Any]) -> str:
    value = raw.get("workflow_id")
    if not isinstance(value, str):
        raise InvalidCommand("workflow_id must be a string")
    problem = name_problem(value, max_length=MAX_WORKFLOW_ID_LENGTH)
    if problem is not None:
        raise InvalidCommand(f"workflow_id {problem}")
    return value


def _run_id(raw: Mapping[str, Any]) -> str | None:
    value = raw.get("run_id")
    if value is None:
        return None
    try:
        return str(uuid.UUID(value)) if isinstance(value, str) and len(value) <= 36 else _no()
    except ValueError:
        return _no()


def _no() -> NoReturn:
    raise InvalidCommand("run_id must be a run id (a UUID) or null")


def _parent_close_policy(raw: Mapping[str, Any]) -> str:
    value = raw.get("parent_close_policy", "terminate")
    if value not in PARENT_CLOSE_POLICIES:
        raise InvalidCommand(
            f"parent_close_policy must be one of {', '.join(PARENT_CLOSE_POLICIES)}")
    assert isinstance(value, str)
    return value


def _seq(raw: Mapping[str, Any]) -> int:
    return _int(raw, "seq", minimum=MIN_SEQ, maximum=MAX_SEQ)


def _update_id(raw: Mapping[str, Any]) -> str:
    value = raw.get("update_id")
    if not isinstance(value, str) or not value or len(value) > MAX_UPDATE_ID_LENGTH:
        raise InvalidCommand(
            f"update_id must be a non-empty string of at most {MAX_UPDATE_ID_LENGTH}")
    return value


def _complete_update(raw: Mapping[str, Any]) -> CompleteUpdate:
    failure = None if raw.get("failure") is None else _failure(raw)
    return CompleteUpdate(update_id=_update_id(raw),
                          result=None if failure is not None else raw.get("result"),
                          failure=failure)


def _failure(raw: Mapping[str, Any]) -> WireFailure:
    failure = raw.get("failure")
    if not isinstance(failure, Mapping):
        raise InvalidCommand("failure must be an object")
    return normalize_failure(failure)


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
    "start_child_workflow": lambda r: StartChildWorkflow(
        seq=_seq(r),
        workflow_type=_name(r, "workflow_type") or "",
        workflow_id=_workflow_id(r),
        input=r.get("input"),
        task_queue=_name(r, "task_queue", required=False),
        execution_timeout_ms=_optional_ms(r, "execution_timeout_ms"),
        parent_close_policy=_parent_close_policy(r),
        retry_policy=(None if r.get("retry_policy") is None
                      else RetryPolicy.from_dict(r.get("retry_policy"))),
    ),
    "signal_external_workflow": lambda r: SignalExternalWorkflow(
        seq=_seq(r), workflow_id=_workflow_id(r),
        signal_name=_name(r, "signal_name") or "", input=r.get("input"), run_id=_run_id(r),
    ),
    "request_cancel_external_workflow": lambda r: RequestCancelExternalWorkflow(
        seq=_seq(r), workflow_id=_workflow_id(r), run_id=_run_id(r),
    ),
    "complete_update": _complete_update,
}


def parse_command(raw: Any) -> Command:
    """One command from its wire form, validated; raises ``InvalidCommand``."""
    if not isinstance(raw, Mapping):
        raise InvalidCommand("a command must be an object")
    kind = raw.get("kind")
    parser = _PARSERS.get(kind) if isinstance(kind, str) else None
    if parser is None:
        raise InvalidCommand(f"unknown command kind: {kind!r}")
    return parser(raw)


def parse_commands(raw: Any) -> list[Command]:
    """A workflow task's commands from their wire form (a list); raises ``InvalidCommand``."""
    if not isinstance(raw, list):
        raise InvalidCommand("commands must be a list")
    return [parse_command(item) for item in raw]


# ---- encoding ----------------------------------------------------------------------------


def _retry_policy_to_wire(policy: RetryPolicy, *, default_is_null: bool = True
                          ) -> JSONObject | None:
    return None if default_is_null and policy is DEFAULT_RETRY_POLICY else policy.to_dict()


def encode_command(command: Command) -> WireCommand:
    """The wire form of a command: ``kind`` first, then every field (None included).

    Shallow: payloads (inputs, results, marker data) are the command's own objects.
    """
    out: WireCommand = {"kind": command.kind}
    for f in fields(command):
        if f.name == "kind":
            continue
        value = getattr(command, f.name)
        # A child's policy is optional (null: no retries), so even the default one is sent.
        out[f.name] = (_retry_policy_to_wire(value, default_is_null=f.name != "retry_policy"
                                             or command.kind != "start_child_workflow")
                       if isinstance(value, RetryPolicy) else value)
    return out


def encode_commands(commands: Iterable[Command]) -> list[WireCommand]:
    """What ``workflow_task_completed.commands`` carries."""
    return [encode_command(command) for command in commands]
