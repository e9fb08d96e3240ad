"""What a transition implies outside the history: task rows, timer rows, runs.

``decide`` returns the events to append and, beside them, these effects; the services only
execute them through the stores. Keeping them here, typed and pure, makes "the rows match
the state" a property of the core that a test checks without a database (tests/core).

Effects name rows by what the core knows (kind, scheduled event id, seq), never by row ids
or lease tokens: those belong to the stores. An effect list is already net: a row created
and dropped in the same transition appears in neither list, and a run that closes keeps only
``CloseRun`` (which drops every row of the run).

The task kinds, task states and timer kinds are defined here, once; the Django models use
the same values as their choices.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Any


class TaskKind(StrEnum):
    WORKFLOW = "workflow"
    ACTIVITY = "activity"


class TaskState(StrEnum):
    READY = "ready"        # waiting for a worker
    LEASED = "leased"      # sent to a worker, which holds it until completion or lease expiry
    BACKOFF = "backoff"    # an activity waiting out its retry back-off (a timer wakes it)


class TimerKind(StrEnum):
    USER = "user"                                  # ctx.sleep, wait_for_signal timeouts
    WORKFLOW_TIMEOUT = "workflow_timeout"          # the run's execution timeout
    WORKFLOW_TASK_RETRY = "workflow_task_retry"    # back-off after a failed workflow task
    ACTIVITY_RETRY = "activity_retry"              # back-off before the next attempt
    ACTIVITY_ATTEMPT = "activity_attempt"          # start-to-close or heartbeat deadline
    ACTIVITY_SCHEDULE_TO_START = "activity_schedule_to_start"
    ACTIVITY_SCHEDULE_TO_CLOSE = "activity_schedule_to_close"
    # Work a parent owes a child, on the child's row (see ``ActOnChild``).
    PARENT_CLOSE_POLICY = "parent_close_policy"      # the parent closed: terminate / cancel
    CHILD_SIGNAL = "child_signal"                    # deliver the parent's signal
    CHILD_CANCEL = "child_cancel"                    # the parent asks the child to cancel
    # What a child's transaction could not write to its busy parent, on the parent's row.
    CHILD_CLOSED = "child_closed"                    # the child ended
    CHILD_SIGNALED = "child_signaled"                # the parent's signal reached the child


# The timers that belong to one pending activity (dropped with it).
ACTIVITY_TIMER_KINDS = (
    TimerKind.ACTIVITY_RETRY, TimerKind.ACTIVITY_ATTEMPT,
    TimerKind.ACTIVITY_SCHEDULE_TO_START, TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE,
)


@dataclass(frozen=True, slots=True)
class CreateTask:
    """A new ready task row: a workflow task or one activity (its first attempt)."""

    kind: TaskKind
    task_queue: str
    type_name: str
    scheduled_event_id: int
    attempt: int = 1
    seq: int | None = None
    input: Any = None
    options: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DropTask:
    kind: TaskKind
    scheduled_event_id: int


@dataclass(frozen=True, slots=True)
class LeaseWorkflowTask:
    """The workflow task was started on ``worker`` (event ``started_event_id``): its row is
    leased to that worker."""

    scheduled_event_id: int
    started_event_id: int
    worker: str


@dataclass(frozen=True, slots=True)
class StartTimer:
    kind: TimerKind
    fire_at: datetime
    seq: int | None = None
    payload: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class DropTimers:
    kinds: tuple[TimerKind, ...]
    seq: int


@dataclass(frozen=True, slots=True)
class RetryActivity:
    """A failed attempt is tried again: its leased task goes to backoff with the next
    attempt and the last failure, its attempt timer is dropped, a retry timer started."""

    seq: int
    attempt: int
    last_failure: Mapping[str, Any]
    retry_at: datetime


@dataclass(frozen=True, slots=True)
class ReadyActivity:
    """The back-off is over: the activity's task goes from backoff to ready."""

    seq: int


@dataclass(frozen=True, slots=True)
class RequestActivityCancel:
    """A leased activity the workflow cancels: mark its task and tell its worker."""

    seq: int
    scheduled_event_id: int


@dataclass(frozen=True, slots=True)
class CloseRun:
    """The run closed: drop every task and timer row of it, tell the workers holding its
    activities, record the outcome on the execution."""

    closed_at: datetime
    result: Any = None
    failure: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class StartSuccessor:
    """The run continued as new, or failed and is retried: start ``run_id`` of the same
    workflow id (once the closed run is saved, so at most one run of the id is open). A
    retry carries its policy, its ``attempt`` and the back-off before its first workflow
    task."""

    run_id: str
    workflow_type: str
    task_queue: str
    input: Any
    execution_timeout_ms: int | None
    retry_policy: Mapping[str, Any] | None = None
    attempt: int = 1
    first_workflow_task_backoff_ms: int | None = None


@dataclass(frozen=True, slots=True)
class StartChild:
    """Start the child run ``run_id`` of ``workflow_id`` with this run as its parent.
    ``parent_closed``: the same workflow task closed the parent, so the parent close policy
    applies to the child at once (and no ChildWorkflowExecutionStarted is recorded)."""

    run_id: str
    workflow_id: str
    workflow_type: str
    task_queue: str
    input: Any
    execution_timeout_ms: int | None
    parent_close_policy: str
    parent_closed: bool = False
    retry_policy: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class ActOnChild:
    """Something this run owes its child ``workflow_id`` (run ``run_id``, or its open run),
    done in the child's own transaction: a timer row of ``kind`` due now on the child's
    row, ``payload`` saying what.

    Why a timer and not a write in this transaction: a child's close writes to its parent in
    the child's transaction, locking the child's row and then the parent's. Writing to the
    child here would lock them the other way round, and two such transactions would
    deadlock. So a parent's transaction never locks a child: it reaches its children through
    these rows, which the timer manager fires (at once: its wake-up is sent on commit) and
    retries like any timer. (The child's transaction does not wait for its parent either:
    ``workflows.services._write.tell_parent``.)"""

    kind: TimerKind
    workflow_id: str
    run_id: str | None
    payload: Mapping[str, Any] = field(default_factory=dict)


Effect = (CreateTask | DropTask | LeaseWorkflowTask | StartTimer | DropTimers | RetryActivity
          | ReadyActivity | RequestActivityCancel | CloseRun | StartSuccessor | StartChild
          | ActOnChild)
