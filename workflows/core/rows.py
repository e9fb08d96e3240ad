"""Which task and timer rows each history event implies.

``imply`` is called for every event a transition appends, in order, and keeps the
transition's effect list net: a WorkflowTaskScheduled makes a workflow task row, an
ActivityTaskScheduled an activity task row and its schedule-to-start/close timers, a
TimerStarted a user timer; the events that end them drop them again (a row created earlier
in the same transition is simply not created); a failed workflow task starts its retry
back-off; a closing event replaces everything with ``CloseRun``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .effects import (
    ACTIVITY_TIMER_KINDS,
    CloseRun,
    CreateTask,
    DropTask,
    DropTimers,
    Effect,
    LeaseWorkflowTask,
    StartTimer,
    TaskKind,
    TimerKind,
)
from .events import CLOSING_EVENTS, Event, EventType
from .state import ExecutionState

E = EventType

# A workflow task that fails is tried again after this back-off, doubling up to the cap.
WORKFLOW_TASK_RETRY_INITIAL_MS = 200
WORKFLOW_TASK_RETRY_MAX_MS = 30_000

ACTIVITY_CLOSING = (E.ACTIVITY_TASK_COMPLETED, E.ACTIVITY_TASK_FAILED,
                    E.ACTIVITY_TASK_TIMED_OUT, E.ACTIVITY_TASK_CANCELED)
WORKFLOW_TASK_ENDING = (E.WORKFLOW_TASK_COMPLETED, E.WORKFLOW_TASK_FAILED,
                        E.WORKFLOW_TASK_TIMED_OUT)
ACTIVITY_OPTIONS = ("retry_policy", "schedule_to_close_ms", "schedule_to_start_ms",
                    "start_to_close_ms", "heartbeat_ms")


def workflow_task_retry_delay_ms(attempt: int) -> int:
    """Back-off before retrying a workflow task whose attempt ``attempt`` failed."""
    return int(min(WORKFLOW_TASK_RETRY_INITIAL_MS * 2 ** min(attempt - 1, 30),
                   WORKFLOW_TASK_RETRY_MAX_MS))


def imply(effects: list[Effect], event: Event, state: ExecutionState) -> None:
    """Add to ``effects`` what ``event`` implies; ``state`` is the state after it."""
    a = event.attributes
    typ = event.event_type
    now = event.timestamp
    if typ is E.WORKFLOW_EXECUTION_STARTED:
        if a.get("execution_timeout_ms"):
            effects.append(StartTimer(TimerKind.WORKFLOW_TIMEOUT,
                                      now + timedelta(milliseconds=a["execution_timeout_ms"])))
        if a.get("first_workflow_task_backoff_ms"):  # a retried run waits out its back-off
            effects.append(StartTimer(TimerKind.WORKFLOW_TASK_RETRY, now + timedelta(
                milliseconds=a["first_workflow_task_backoff_ms"])))
    elif typ is E.WORKFLOW_TASK_SCHEDULED:
        effects.append(CreateTask(TaskKind.WORKFLOW, a["task_queue"], state.workflow_type,
                                  event.event_id, attempt=a["attempt"]))
    elif typ is E.WORKFLOW_TASK_STARTED:
        effects.append(LeaseWorkflowTask(a["scheduled_event_id"], event.event_id, a["worker"]))
    elif typ in WORKFLOW_TASK_ENDING:
        _drop_task(effects, TaskKind.WORKFLOW, a["scheduled_event_id"])
        if typ is E.WORKFLOW_TASK_FAILED and a["cause"] != "unhandled_events":
            delay = workflow_task_retry_delay_ms(state.workflow_task_attempt - 1)
            effects.append(StartTimer(TimerKind.WORKFLOW_TASK_RETRY,
                                      now + timedelta(milliseconds=delay)))
    elif typ is E.ACTIVITY_TASK_SCHEDULED:
        effects.extend(_schedule_activity(event, now))
    elif typ in ACTIVITY_CLOSING:
        _drop_task(effects, TaskKind.ACTIVITY, a["scheduled_event_id"])
        _drop_timers(effects, ACTIVITY_TIMER_KINDS, a["seq"])
    elif typ is E.TIMER_STARTED:
        effects.append(StartTimer(TimerKind.USER, datetime.fromisoformat(a["fire_at"]),
                                  seq=a["seq"]))
    elif typ is E.TIMER_CANCELED:
        _drop_timers(effects, (TimerKind.USER,), a["seq"])
    elif typ in CLOSING_EVENTS:
        effects[:] = [close_run(event)]


def _schedule_activity(event: Event, now: datetime) -> list[Effect]:
    a = event.attributes
    options: dict[str, Any] = {k: a[k] for k in ACTIVITY_OPTIONS}
    options["scheduled_at"] = now.isoformat()
    out: list[Effect] = [CreateTask(TaskKind.ACTIVITY, a["task_queue"], a["activity_type"],
                                    event.event_id, seq=a["seq"], input=a["input"],
                                    options=options)]
    for key, kind in (("schedule_to_start_ms", TimerKind.ACTIVITY_SCHEDULE_TO_START),
                      ("schedule_to_close_ms", TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE)):
        if a.get(key):
            out.append(StartTimer(kind, now + timedelta(milliseconds=a[key]), seq=a["seq"]))
    return out


def _drop_task(effects: list[Effect], kind: TaskKind, scheduled_event_id: int) -> None:
    """Drop a task: one created in this transition is not created; another is deleted."""
    for i, e in enumerate(effects):
        if (isinstance(e, CreateTask) and e.kind is kind
                and e.scheduled_event_id == scheduled_event_id):
            del effects[i]
            effects[:] = [e for e in effects if not (
                isinstance(e, LeaseWorkflowTask) and kind is TaskKind.WORKFLOW
                and e.scheduled_event_id == scheduled_event_id)]
            return
    effects.append(DropTask(kind, scheduled_event_id))


def _drop_timers(effects: list[Effect], kinds: tuple[TimerKind, ...], seq: int) -> None:
    """Drop timers: those started in this transition are not started, and stored ones are
    deleted (always: a stored one may exist beside a new one)."""
    effects[:] = [e for e in effects
                  if not (isinstance(e, StartTimer) and e.kind in kinds and e.seq == seq)]
    effects.append(DropTimers(kinds, seq))


def close_run(event: Event) -> CloseRun:
    """The outcome a closing event records on the execution."""
    a = event.attributes
    typ = event.event_type
    if typ is E.WORKFLOW_EXECUTION_COMPLETED:
        return CloseRun(event.timestamp, result=a["result"])
    if typ is E.WORKFLOW_EXECUTION_FAILED:
        return CloseRun(event.timestamp, failure=a["failure"])
    if typ is E.WORKFLOW_EXECUTION_CANCELED:
        return CloseRun(event.timestamp, failure={
            "type": "Canceled", "message": "the workflow was canceled",
            "details": a.get("details")})
    if typ is E.WORKFLOW_EXECUTION_TERMINATED:
        return CloseRun(event.timestamp, failure={
            "type": "Terminated", "message": a.get("reason") or "terminated"})
    if typ is E.WORKFLOW_EXECUTION_TIMED_OUT:
        return CloseRun(event.timestamp, failure={
            "type": "TimedOut", "message": "the workflow execution timed out"})
    return CloseRun(event.timestamp)  # continued as new: no result of its own
