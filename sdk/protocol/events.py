"""History event types: the vocabulary of an execution's append-only log, and its shapes.

Event types follow Temporal's names, which users already know. Each event's attributes are a
JSON object whose keys and value types ``ATTRIBUTE_SHAPES`` gives per type, as ``TypedDict``
classes (docs/protocol.md's table of events is generated from them). Events that answer a
command (an activity result, a timer firing) carry the command's ``seq`` as well as the id of
the event that scheduled it, so a worker holding only the new events of a run (sticky
execution) can route them without a lookup.

The stored event (its id, timestamp and wire form) belongs to the engine:
``workflows.core.events.Event``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypedDict

from sdk.protocol.failures import Failure
from sdk.protocol.payloads import JSONObject, JSONValue

__all__ = ["ATTRIBUTE_SHAPES", "CLOSING_EVENTS", "INPUT_EVENTS", "EventType", "ParentRef"]


class EventType(StrEnum):
    WORKFLOW_EXECUTION_STARTED = "WorkflowExecutionStarted"
    WORKFLOW_TASK_SCHEDULED = "WorkflowTaskScheduled"
    WORKFLOW_TASK_STARTED = "WorkflowTaskStarted"
    WORKFLOW_TASK_COMPLETED = "WorkflowTaskCompleted"
    WORKFLOW_TASK_FAILED = "WorkflowTaskFailed"
    WORKFLOW_TASK_TIMED_OUT = "WorkflowTaskTimedOut"
    ACTIVITY_TASK_SCHEDULED = "ActivityTaskScheduled"
    ACTIVITY_TASK_STARTED = "ActivityTaskStarted"
    ACTIVITY_TASK_COMPLETED = "ActivityTaskCompleted"
    ACTIVITY_TASK_FAILED = "ActivityTaskFailed"
    ACTIVITY_TASK_TIMED_OUT = "ActivityTaskTimedOut"
    ACTIVITY_TASK_CANCEL_REQUESTED = "ActivityTaskCancelRequested"
    ACTIVITY_TASK_CANCELED = "ActivityTaskCanceled"
    TIMER_STARTED = "TimerStarted"
    TIMER_FIRED = "TimerFired"
    TIMER_CANCELED = "TimerCanceled"
    WORKFLOW_EXECUTION_SIGNALED = "WorkflowExecutionSignaled"
    MARKER_RECORDED = "MarkerRecorded"
    WORKFLOW_EXECUTION_CANCEL_REQUESTED = "WorkflowExecutionCancelRequested"
    WORKFLOW_EXECUTION_COMPLETED = "WorkflowExecutionCompleted"
    WORKFLOW_EXECUTION_FAILED = "WorkflowExecutionFailed"
    WORKFLOW_EXECUTION_CANCELED = "WorkflowExecutionCanceled"
    WORKFLOW_EXECUTION_TERMINATED = "WorkflowExecutionTerminated"
    WORKFLOW_EXECUTION_TIMED_OUT = "WorkflowExecutionTimedOut"
    WORKFLOW_EXECUTION_CONTINUED_AS_NEW = "WorkflowExecutionContinuedAsNew"


E = EventType


class ParentRef(TypedDict):
    """The run that started this one."""

    workflow_id: str
    run_id: str


# ---- attribute shapes, one per event type ----------------------------------------------


class WorkflowExecutionStarted(TypedDict):
    """The run began (started by a client, or continued from ``continued_from_run_id``)."""

    workflow_type: str
    task_queue: str
    input: JSONValue
    execution_timeout_ms: int | None
    parent: ParentRef | None
    continued_from_run_id: str | None


class WorkflowTaskScheduled(TypedDict):
    """A workflow task waits for a worker."""

    task_queue: str
    attempt: int


class WorkflowTaskStarted(TypedDict):
    """A worker took the workflow task."""

    scheduled_event_id: int
    attempt: int
    worker: str


class WorkflowTaskCompleted(TypedDict):
    """The worker completed it; the events its commands wrote follow."""

    scheduled_event_id: int
    started_event_id: int
    worker: str


class WorkflowTaskFailed(TypedDict):
    """The task failed (``cause``: ``workflow_error``, ``deadlock_detected``,
    ``nondeterminism``, ``unhandled_events``, ...)."""

    scheduled_event_id: int
    started_event_id: int
    cause: str
    failure: Failure


class WorkflowTaskTimedOut(TypedDict):
    """The worker went silent or took too long; the task is scheduled again."""

    scheduled_event_id: int
    started_event_id: int


class ActivityTaskScheduled(TypedDict):
    """A ``schedule_activity`` command; ``retry_policy`` has every key filled in."""

    seq: int
    activity_type: str
    task_queue: str
    input: JSONValue
    retry_policy: JSONObject
    schedule_to_close_ms: int | None
    schedule_to_start_ms: int | None
    start_to_close_ms: int | None
    heartbeat_ms: int | None


class ActivityTaskStarted(TypedDict):
    """The last attempt started (earlier attempts write no events)."""

    scheduled_event_id: int
    seq: int
    attempt: int
    worker: str


class ActivityTaskCompleted(TypedDict):
    """The activity returned ``result``."""

    scheduled_event_id: int
    seq: int
    result: JSONValue


class ActivityTaskFailed(TypedDict):
    """The activity failed for good (retries exhausted or not retryable)."""

    scheduled_event_id: int
    seq: int
    failure: Failure
    attempt: int


class ActivityTaskTimedOut(TypedDict):
    """A timeout expired (``timeout_type``: ``start_to_close``, ``heartbeat``, ...)."""

    scheduled_event_id: int
    seq: int
    timeout_type: str
    failure: Failure
    attempt: int


class ActivityTaskCancelRequested(TypedDict):
    """A ``request_cancel_activity`` command."""

    scheduled_event_id: int
    seq: int


class ActivityTaskCanceled(TypedDict):
    """The activity stopped because it was canceled."""

    scheduled_event_id: int
    seq: int
    details: JSONValue


class TimerStarted(TypedDict):
    """A ``start_timer`` command; ``fire_at`` is an ISO 8601 time."""

    seq: int
    duration_ms: int
    fire_at: str


class TimerFired(TypedDict):
    """The timer fired."""

    started_event_id: int
    seq: int


class TimerCanceled(TypedDict):
    """A ``cancel_timer`` command for a timer that had not fired."""

    started_event_id: int
    seq: int


class WorkflowExecutionSignaled(TypedDict):
    """A signal arrived."""

    signal_name: str
    input: JSONValue


class MarkerRecorded(TypedDict):
    """A ``record_marker`` command (side effects)."""

    seq: int
    marker_name: str
    data: JSONValue


class WorkflowExecutionCancelRequested(TypedDict):
    """Someone asked the run to cancel."""

    reason: str | None


class WorkflowExecutionCompleted(TypedDict):
    """A ``complete_workflow`` command: the run's result."""

    result: JSONValue


class WorkflowExecutionFailed(TypedDict):
    """A ``fail_workflow`` command."""

    failure: Failure


class WorkflowExecutionCanceled(TypedDict):
    """A ``cancel_workflow`` command."""

    details: JSONValue


class WorkflowExecutionTerminated(TypedDict):
    """The run was terminated from outside; no workflow code ran."""

    reason: str | None


class WorkflowExecutionTimedOut(TypedDict):
    """The run's execution timeout expired."""


class WorkflowExecutionContinuedAsNew(TypedDict):
    """A ``continue_as_new`` command: the run closed and ``new_run_id`` began."""

    new_run_id: str
    workflow_type: str
    task_queue: str
    input: JSONValue


ATTRIBUTE_SHAPES: dict[EventType, type] = {
    E.WORKFLOW_EXECUTION_STARTED: WorkflowExecutionStarted,
    E.WORKFLOW_TASK_SCHEDULED: WorkflowTaskScheduled,
    E.WORKFLOW_TASK_STARTED: WorkflowTaskStarted,
    E.WORKFLOW_TASK_COMPLETED: WorkflowTaskCompleted,
    E.WORKFLOW_TASK_FAILED: WorkflowTaskFailed,
    E.WORKFLOW_TASK_TIMED_OUT: WorkflowTaskTimedOut,
    E.ACTIVITY_TASK_SCHEDULED: ActivityTaskScheduled,
    E.ACTIVITY_TASK_STARTED: ActivityTaskStarted,
    E.ACTIVITY_TASK_COMPLETED: ActivityTaskCompleted,
    E.ACTIVITY_TASK_FAILED: ActivityTaskFailed,
    E.ACTIVITY_TASK_TIMED_OUT: ActivityTaskTimedOut,
    E.ACTIVITY_TASK_CANCEL_REQUESTED: ActivityTaskCancelRequested,
    E.ACTIVITY_TASK_CANCELED: ActivityTaskCanceled,
    E.TIMER_STARTED: TimerStarted,
    E.TIMER_FIRED: TimerFired,
    E.TIMER_CANCELED: TimerCanceled,
    E.WORKFLOW_EXECUTION_SIGNALED: WorkflowExecutionSignaled,
    E.MARKER_RECORDED: MarkerRecorded,
    E.WORKFLOW_EXECUTION_CANCEL_REQUESTED: WorkflowExecutionCancelRequested,
    E.WORKFLOW_EXECUTION_COMPLETED: WorkflowExecutionCompleted,
    E.WORKFLOW_EXECUTION_FAILED: WorkflowExecutionFailed,
    E.WORKFLOW_EXECUTION_CANCELED: WorkflowExecutionCanceled,
    E.WORKFLOW_EXECUTION_TERMINATED: WorkflowExecutionTerminated,
    E.WORKFLOW_EXECUTION_TIMED_OUT: WorkflowExecutionTimedOut,
    E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW: WorkflowExecutionContinuedAsNew,
}
"""The attributes of each event type, as a ``TypedDict`` named after it."""

CLOSING_EVENTS = frozenset(
    {
        E.WORKFLOW_EXECUTION_COMPLETED,
        E.WORKFLOW_EXECUTION_FAILED,
        E.WORKFLOW_EXECUTION_CANCELED,
        E.WORKFLOW_EXECUTION_TERMINATED,
        E.WORKFLOW_EXECUTION_TIMED_OUT,
        E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)
"""Events that close a run."""

INPUT_EVENTS = frozenset(
    {
        E.WORKFLOW_EXECUTION_STARTED,
        E.ACTIVITY_TASK_COMPLETED,
        E.ACTIVITY_TASK_FAILED,
        E.ACTIVITY_TASK_TIMED_OUT,
        E.ACTIVITY_TASK_CANCELED,
        E.TIMER_FIRED,
        E.WORKFLOW_EXECUTION_SIGNALED,
        E.WORKFLOW_EXECUTION_CANCEL_REQUESTED,
    }
)
"""Events that give a running workflow something new to react to: each one needs a workflow
task (scheduled at once, or after the one in flight completes)."""
