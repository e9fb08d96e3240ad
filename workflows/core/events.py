"""History events: the vocabulary of an execution's append-only log.

Event types follow Temporal's names, which users already know. Each event's attributes are a
JSON object; the keys each type carries are listed in ``ATTRIBUTES`` and in docs/events.md.
Events that answer a command (an activity result, a timer firing) carry the command's ``seq``
as well as the id of the event that scheduled it, so a worker holding only the new events of
a run (sticky execution) can route them without a lookup.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


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
    START_CHILD_WORKFLOW_EXECUTION_INITIATED = "StartChildWorkflowExecutionInitiated"
    CHILD_WORKFLOW_EXECUTION_STARTED = "ChildWorkflowExecutionStarted"
    CHILD_WORKFLOW_EXECUTION_COMPLETED = "ChildWorkflowExecutionCompleted"
    CHILD_WORKFLOW_EXECUTION_FAILED = "ChildWorkflowExecutionFailed"
    WORKFLOW_EXECUTION_CANCEL_REQUESTED = "WorkflowExecutionCancelRequested"
    WORKFLOW_EXECUTION_COMPLETED = "WorkflowExecutionCompleted"
    WORKFLOW_EXECUTION_FAILED = "WorkflowExecutionFailed"
    WORKFLOW_EXECUTION_CANCELED = "WorkflowExecutionCanceled"
    WORKFLOW_EXECUTION_TERMINATED = "WorkflowExecutionTerminated"
    WORKFLOW_EXECUTION_TIMED_OUT = "WorkflowExecutionTimedOut"
    WORKFLOW_EXECUTION_CONTINUED_AS_NEW = "WorkflowExecutionContinuedAsNew"


E = EventType

# The attribute keys each event type carries. ``failure`` values are
# {"type", "message", "stack", "details", "non_retryable"} objects (see failures in docs).
ATTRIBUTES: dict[EventType, tuple[str, ...]] = {
    E.WORKFLOW_EXECUTION_STARTED: (
        "workflow_type", "task_queue", "input", "execution_timeout_ms", "parent",
        "continued_from_run_id",
    ),
    E.WORKFLOW_TASK_SCHEDULED: ("task_queue", "attempt"),
    E.WORKFLOW_TASK_STARTED: ("scheduled_event_id", "attempt", "worker"),
    E.WORKFLOW_TASK_COMPLETED: ("scheduled_event_id", "started_event_id", "worker"),
    E.WORKFLOW_TASK_FAILED: ("scheduled_event_id", "started_event_id", "cause", "failure"),
    E.WORKFLOW_TASK_TIMED_OUT: ("scheduled_event_id", "started_event_id"),
    E.ACTIVITY_TASK_SCHEDULED: (
        "seq", "activity_type", "task_queue", "input", "retry_policy",
        "schedule_to_close_ms", "schedule_to_start_ms", "start_to_close_ms", "heartbeat_ms",
    ),
    E.ACTIVITY_TASK_STARTED: ("scheduled_event_id", "seq", "attempt", "worker"),
    E.ACTIVITY_TASK_COMPLETED: ("scheduled_event_id", "seq", "result"),
    E.ACTIVITY_TASK_FAILED: ("scheduled_event_id", "seq", "failure", "attempt"),
    E.ACTIVITY_TASK_TIMED_OUT: ("scheduled_event_id", "seq", "timeout_type", "failure", "attempt"),
    E.ACTIVITY_TASK_CANCEL_REQUESTED: ("scheduled_event_id", "seq"),
    E.ACTIVITY_TASK_CANCELED: ("scheduled_event_id", "seq", "details"),
    E.TIMER_STARTED: ("seq", "duration_ms", "fire_at"),
    E.TIMER_FIRED: ("started_event_id", "seq"),
    E.TIMER_CANCELED: ("started_event_id", "seq"),
    E.WORKFLOW_EXECUTION_SIGNALED: ("signal_name", "input"),
    E.MARKER_RECORDED: ("seq", "marker_name", "data"),
    E.START_CHILD_WORKFLOW_EXECUTION_INITIATED: ("seq", "workflow_id", "workflow_type", "input"),
    E.CHILD_WORKFLOW_EXECUTION_STARTED: ("initiated_event_id", "seq", "workflow_id", "run_id"),
    E.CHILD_WORKFLOW_EXECUTION_COMPLETED: ("initiated_event_id", "seq", "result"),
    E.CHILD_WORKFLOW_EXECUTION_FAILED: ("initiated_event_id", "seq", "failure"),
    E.WORKFLOW_EXECUTION_CANCEL_REQUESTED: ("reason",),
    E.WORKFLOW_EXECUTION_COMPLETED: ("result",),
    E.WORKFLOW_EXECUTION_FAILED: ("failure",),
    E.WORKFLOW_EXECUTION_CANCELED: ("details",),
    E.WORKFLOW_EXECUTION_TERMINATED: ("reason",),
    E.WORKFLOW_EXECUTION_TIMED_OUT: (),
    E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW: ("new_run_id", "workflow_type", "task_queue", "input"),
}

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

# Events that give a running workflow something new to react to: each one needs a workflow
# task (scheduled at once, or after the one in flight completes).
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
        E.CHILD_WORKFLOW_EXECUTION_STARTED,
        E.CHILD_WORKFLOW_EXECUTION_COMPLETED,
        E.CHILD_WORKFLOW_EXECUTION_FAILED,
    }
)


@dataclass(frozen=True, slots=True)
class NewEvent:
    """An event decided on but not yet numbered or stored."""

    event_type: EventType
    attributes: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Event:
    """A stored history event: dense ``event_id`` from 1 within its run."""

    event_id: int
    event_type: EventType
    timestamp: datetime
    attributes: dict[str, Any]

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "timestamp": self.timestamp.isoformat(),
            "attributes": self.attributes,
        }
