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
from typing import NotRequired, TypedDict

from sdk.protocol.failures import Failure
from sdk.protocol.payloads import JSONObject, JSONValue

__all__ = [
    "ATTRIBUTE_SHAPES", "CHILD_CLOSED_EVENTS", "CLOSING_EVENTS", "INPUT_EVENTS", "EventType",
    "ParentRef",
]


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
    START_CHILD_WORKFLOW_EXECUTION_INITIATED = "StartChildWorkflowExecutionInitiated"
    START_CHILD_WORKFLOW_EXECUTION_FAILED = "StartChildWorkflowExecutionFailed"
    CHILD_WORKFLOW_EXECUTION_STARTED = "ChildWorkflowExecutionStarted"
    CHILD_WORKFLOW_EXECUTION_COMPLETED = "ChildWorkflowExecutionCompleted"
    CHILD_WORKFLOW_EXECUTION_FAILED = "ChildWorkflowExecutionFailed"
    CHILD_WORKFLOW_EXECUTION_CANCELED = "ChildWorkflowExecutionCanceled"
    CHILD_WORKFLOW_EXECUTION_TERMINATED = "ChildWorkflowExecutionTerminated"
    CHILD_WORKFLOW_EXECUTION_TIMED_OUT = "ChildWorkflowExecutionTimedOut"
    SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED = "SignalExternalWorkflowExecutionInitiated"
    SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED = "SignalExternalWorkflowExecutionFailed"
    EXTERNAL_WORKFLOW_EXECUTION_SIGNALED = "ExternalWorkflowExecutionSignaled"
    REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED = (
        "RequestCancelExternalWorkflowExecutionInitiated")
    WORKFLOW_EXECUTION_UPDATE_ACCEPTED = "WorkflowExecutionUpdateAccepted"
    WORKFLOW_EXECUTION_UPDATE_COMPLETED = "WorkflowExecutionUpdateCompleted"


E = EventType


class ParentRef(TypedDict):
    """The run that started this one (a child workflow's parent)."""

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
    # Only on a child started with a retry policy: the policy, this run's attempt (1 for
    # the first) and, on a retry, the back-off waited before its first workflow task.
    retry_policy: NotRequired[JSONObject]
    attempt: NotRequired[int]
    first_workflow_task_backoff_ms: NotRequired[int]


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
    """A signal arrived. A signal-with-start that started the run records its signal right
    after ``WorkflowExecutionStarted``, before the first ``WorkflowTaskScheduled``."""

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
    """A ``fail_workflow`` command. ``new_execution_run_id``: the run's retry policy starts
    that run of the same workflow id (after its back-off)."""

    failure: Failure
    new_execution_run_id: NotRequired[str]


class WorkflowExecutionCanceled(TypedDict):
    """A ``cancel_workflow`` command."""

    details: JSONValue


class WorkflowExecutionTerminated(TypedDict):
    """The run was terminated from outside; no workflow code ran."""

    reason: str | None


class WorkflowExecutionTimedOut(TypedDict):
    """The run's execution timeout expired. ``new_execution_run_id``: the run's retry
    policy starts that run of the same workflow id (after its back-off)."""

    new_execution_run_id: NotRequired[str]


class WorkflowExecutionContinuedAsNew(TypedDict):
    """A ``continue_as_new`` command: the run closed and ``new_run_id`` began."""

    new_run_id: str
    workflow_type: str
    task_queue: str
    input: JSONValue


# ---- child workflows (a parent's history) ---------------------------------------------------
# Every event answering a ``start_child_workflow`` command carries its ``seq`` and
# ``initiated_event_id``, and names the child by ``workflow_id``.


class StartChildWorkflowExecutionInitiated(TypedDict):
    """A ``start_child_workflow`` command (``parent_close_policy``: ``terminate``,
    ``abandon`` or ``request_cancel``)."""

    seq: int
    workflow_type: str
    workflow_id: str
    task_queue: str
    input: JSONValue
    execution_timeout_ms: int | None
    parent_close_policy: str
    retry_policy: NotRequired[JSONObject]


class StartChildWorkflowExecutionFailed(TypedDict):
    """The child could not start (``cause``: ``workflow_already_started``)."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    cause: str


class ChildWorkflowExecutionStarted(TypedDict):
    """The child's first run started (in the same transaction as the command)."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    run_id: str


class ChildWorkflowExecutionCompleted(TypedDict):
    """The child (the last run of its continue-as-new chain) returned ``result``."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    run_id: str
    result: JSONValue


class ChildWorkflowExecutionFailed(TypedDict):
    """The child failed with ``failure``."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    run_id: str
    failure: Failure


class ChildWorkflowExecutionCanceled(TypedDict):
    """The child was canceled."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    run_id: str
    details: JSONValue


class ChildWorkflowExecutionTerminated(TypedDict):
    """The child was terminated."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    run_id: str
    reason: str | None


class ChildWorkflowExecutionTimedOut(TypedDict):
    """The child's execution timeout expired."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    run_id: str


class SignalExternalWorkflowExecutionInitiated(TypedDict):
    """A ``signal_external_workflow`` command: signal the child ``workflow_id``."""

    seq: int
    workflow_id: str
    run_id: str | None
    signal_name: str
    input: JSONValue


class SignalExternalWorkflowExecutionFailed(TypedDict):
    """The signal could not be delivered (``cause``: ``workflow_not_found``, no such child
    open; ``workflow_closed``, the child closed first)."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    cause: str


class ExternalWorkflowExecutionSignaled(TypedDict):
    """The signal was delivered to the run ``run_id``."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    run_id: str


class RequestCancelExternalWorkflowExecutionInitiated(TypedDict):
    """A ``request_cancel_external_workflow`` command: ask the child ``workflow_id`` to
    cancel (its outcome arrives as the child's closing event)."""

    seq: int
    workflow_id: str
    run_id: str | None


class WorkflowExecutionUpdateAccepted(TypedDict):
    """An update passed its validator on a worker and was accepted: the workflow runs its
    handler ``update_name`` with ``args``. ``update_id`` is the caller's (or a drawn) id: an
    update under an id already accepted is not accepted again."""

    update_id: str
    update_name: str
    args: list[JSONValue]


class WorkflowExecutionUpdateCompleted(TypedDict):
    """A ``complete_update`` command: the update's handler returned ``result``, or failed
    the update with ``failure`` (the run goes on either way)."""

    update_id: str
    accepted_event_id: int
    result: JSONValue
    failure: Failure | None


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
    E.START_CHILD_WORKFLOW_EXECUTION_INITIATED: StartChildWorkflowExecutionInitiated,
    E.START_CHILD_WORKFLOW_EXECUTION_FAILED: StartChildWorkflowExecutionFailed,
    E.CHILD_WORKFLOW_EXECUTION_STARTED: ChildWorkflowExecutionStarted,
    E.CHILD_WORKFLOW_EXECUTION_COMPLETED: ChildWorkflowExecutionCompleted,
    E.CHILD_WORKFLOW_EXECUTION_FAILED: ChildWorkflowExecutionFailed,
    E.CHILD_WORKFLOW_EXECUTION_CANCELED: ChildWorkflowExecutionCanceled,
    E.CHILD_WORKFLOW_EXECUTION_TERMINATED: ChildWorkflowExecutionTerminated,
    E.CHILD_WORKFLOW_EXECUTION_TIMED_OUT: ChildWorkflowExecutionTimedOut,
    E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: SignalExternalWorkflowExecutionInitiated,
    E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED: SignalExternalWorkflowExecutionFailed,
    E.EXTERNAL_WORKFLOW_EXECUTION_SIGNALED: ExternalWorkflowExecutionSignaled,
    E.REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED:
        RequestCancelExternalWorkflowExecutionInitiated,
    E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED: WorkflowExecutionUpdateAccepted,
    E.WORKFLOW_EXECUTION_UPDATE_COMPLETED: WorkflowExecutionUpdateCompleted,
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

CHILD_CLOSED_EVENTS = (
    E.CHILD_WORKFLOW_EXECUTION_COMPLETED,
    E.CHILD_WORKFLOW_EXECUTION_FAILED,
    E.CHILD_WORKFLOW_EXECUTION_CANCELED,
    E.CHILD_WORKFLOW_EXECUTION_TERMINATED,
    E.CHILD_WORKFLOW_EXECUTION_TIMED_OUT,
)
"""Events in a parent's history that say how a child ended (its last run, past any
continue-as-new)."""

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
        E.START_CHILD_WORKFLOW_EXECUTION_FAILED,
        E.CHILD_WORKFLOW_EXECUTION_STARTED,
        *CHILD_CLOSED_EVENTS,
        E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED,
        E.EXTERNAL_WORKFLOW_EXECUTION_SIGNALED,
        E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
    }
)
"""Events that give a running workflow something new to react to: each one needs a workflow
task (scheduled at once, or after the one in flight completes)."""
