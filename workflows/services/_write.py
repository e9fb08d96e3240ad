"""Writing a decided transition: events, snapshot, and the task and timer rows they imply.

Every service locks the execution row, asks ``workflows.core.decide`` for a ``Transition``,
and hands it to ``write_transition``, inside the caller's one ``atomic(durable=True)``. The
rows a transition implies are derived from its events here, in one place: a
WorkflowTaskScheduled makes a workflow task row, an ActivityTaskScheduled an activity task
row and its deadline timers, a TimerStarted a timer row, a closing event removes every task
and timer of the run. Wake-ups for the dispatcher and the timer manager are sent on commit.

A worker completing a task may be handed the run's next tasks in the same transaction
(``Lessee``): the workflow task of a run whose cache it holds, the activities it serves. That
saves the dispatcher a round trip and a transaction per step, which is where most of a
workflow's latency would go.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from dispatch import wakeup
from dispatch.models import Task, TaskKind, TaskState
from timers.models import Timer, TimerKind
from workflows import changes
from workflows.core import decide
from workflows.core.events import CLOSING_EVENTS, Event, EventType
from workflows.models import Execution, HistoryEvent

from . import _sql

E = EventType
ACTIVITY_TIMER_KINDS = (
    TimerKind.ACTIVITY_RETRY, TimerKind.ACTIVITY_ATTEMPT,
    TimerKind.ACTIVITY_SCHEDULE_TO_START, TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE,
)
LEASE_FIELDS = ("state", "token", "lease_owner", "leased_at", "lease_expires_at")
ACTIVITY_CLOSING = (E.ACTIVITY_TASK_COMPLETED, E.ACTIVITY_TASK_FAILED,
                    E.ACTIVITY_TASK_TIMED_OUT, E.ACTIVITY_TASK_CANCELED)


@dataclass
class Lessee:
    """A connected worker that may take a run's new tasks in the same transaction."""

    worker_id: str
    task_queue: str
    workflow_types: frozenset[str]
    activity_types: frozenset[str]
    workflow_slots: int
    activity_slots: int
    lease_seconds: float
    workflow_task_timeout_seconds: float


@dataclass
class Outcome:
    execution: Execution
    events: list[Event]
    # Task messages for the lessee, to send once the transaction has committed.
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # Cancel notices for activities other workers hold: (worker_id, token).
    cancels: list[tuple[str, str]] = field(default_factory=list)


def new_token(execution_id: int) -> str:
    """A lease token: the run's id (so a completion locks the run first) and 96 random bits."""
    return f"{execution_id}.{secrets.token_hex(12)}"


def execution_id_from_token(token: str) -> int | None:
    head, _, rest = token.partition(".")
    return int(head) if head.isdigit() and len(head) < 19 and rest else None


def lock_execution(execution_id: int) -> Execution:
    """Lock and return the execution row. Callers lock it before any task or timer row."""
    return _sql.lock_execution(execution_id)


def write_transition(execution: Execution, t: decide.Transition, *,
                     lessee: Lessee | None = None, task: Task | None = None) -> Outcome:
    """Append ``t``'s events, update the snapshot, write the implied rows. In an atomic block,
    with the execution row locked."""
    if any(e.event_type in (E.WORKFLOW_TASK_FAILED, E.WORKFLOW_TASK_TIMED_OUT)
           for e in t.events):
        # The cached copy ran a task that did not count: the next task replays from scratch.
        execution.sticky_worker = ""
    if lessee is not None:
        _lease_new_workflow_task(execution, t, lessee)
    now = t.now
    _sql.insert([HistoryEvent(execution=execution, event_id=e.event_id,
                              event_type=e.event_type.value, timestamp=e.timestamp,
                              attributes=e.attributes) for e in t.events])
    outcome = Outcome(execution, list(t.events))
    rows = _Rows(execution)
    closed = False
    for e in t.events:
        a = e.attributes
        typ = e.event_type
        if typ is E.WORKFLOW_EXECUTION_STARTED and a.get("execution_timeout_ms"):
            rows.timers.append(Timer(
                execution=execution, kind=TimerKind.WORKFLOW_TIMEOUT, created_at=now,
                fire_at=now + timedelta(milliseconds=a["execution_timeout_ms"])))
        elif typ is E.WORKFLOW_TASK_SCHEDULED:
            rows.tasks.append(Task(execution=execution, kind=TaskKind.WORKFLOW,
                                   task_queue=a["task_queue"], type_name=execution.workflow_type,
                                   scheduled_event_id=e.event_id, attempt=a["attempt"],
                                   created_at=now))
        elif typ is E.WORKFLOW_TASK_STARTED:
            _mark_workflow_task_started(execution, [*rows.tasks, *([task] if task else [])],
                                        e, lessee, outcome)
        elif typ in (E.WORKFLOW_TASK_COMPLETED, E.WORKFLOW_TASK_FAILED, E.WORKFLOW_TASK_TIMED_OUT):
            rows.drop_task(TaskKind.WORKFLOW, a["scheduled_event_id"])
            if typ is E.WORKFLOW_TASK_FAILED and a["cause"] != "unhandled_events":
                delay = decide.workflow_task_retry_delay_ms(t.state.workflow_task_attempt - 1)
                rows.timers.append(Timer(execution=execution, kind=TimerKind.WORKFLOW_TASK_RETRY,
                                         fire_at=now + timedelta(milliseconds=delay),
                                         created_at=now))
        elif typ is E.ACTIVITY_TASK_SCHEDULED:
            _schedule_activity(execution, e, rows.tasks, rows.timers, now)
        elif typ in ACTIVITY_CLOSING:
            rows.drop_task(TaskKind.ACTIVITY, a["scheduled_event_id"])
            rows.drop_timers(ACTIVITY_TIMER_KINDS, a["seq"])
        elif typ is E.TIMER_STARTED:
            rows.timers.append(Timer(execution=execution, kind=TimerKind.USER, seq=a["seq"],
                                     fire_at=datetime.fromisoformat(a["fire_at"]),
                                     created_at=now))
        elif typ is E.TIMER_CANCELED:
            rows.drop_timers((TimerKind.USER,), a["seq"])
        elif typ in CLOSING_EVENTS:
            closed = True
            _close(execution, e, outcome)
            rows.tasks.clear()
            rows.timers.clear()
    if rows.tasks:
        if lessee is not None:  # leased before the insert: one statement per task
            _lease_new_activities(execution, rows.tasks, lessee, outcome, now)
        _sql.insert([task for task in rows.tasks if task.pk is None])
        if any(task.state == TaskState.READY for task in rows.tasks):
            wakeup.on_commit(wakeup.DISPATCH)
    if rows.timers:
        _sql.insert(rows.timers)
        wakeup.on_commit(wakeup.TIMERS)
    _save_snapshot(execution, t, closed=closed)
    changes.on_commit(execution, t.events)
    return outcome


class _Rows:
    """The task and timer rows a transition creates, net of those it also closes."""

    def __init__(self, execution: Execution) -> None:
        self.execution = execution
        self.tasks: list[Task] = []
        self.timers: list[Timer] = []

    def drop_task(self, kind: str, scheduled_event_id: int) -> None:
        before = len(self.tasks)
        self.tasks = [task for task in self.tasks if not (
            task.kind == kind and task.scheduled_event_id == scheduled_event_id
            and task.pk is None)]
        if len(self.tasks) == before:
            _sql.delete_tasks(self.execution.pk, kind, scheduled_event_id)

    def drop_timers(self, kinds: tuple[str, ...], seq: int) -> None:
        self.timers = [timer for timer in self.timers
                       if not (timer.kind in kinds and timer.seq == seq)]
        _sql.delete_timers(self.execution.pk, kinds, seq)


def _save_snapshot(execution: Execution, t: decide.Transition, *, closed: bool) -> None:
    execution.state = t.state.to_dict()
    execution.next_event_id = t.state.next_event_id
    execution.status = t.state.status.value
    fields = ["state", "next_event_id", "status", "sticky_worker", "sticky_next_event_id",
              "last_task_failure"]
    if closed:
        fields += ["result", "failure", "closed_at"]
        execution.sticky_worker = ""
    _sql.update(execution, fields)


def _close(execution: Execution, event: Event, outcome: Outcome) -> None:
    a = event.attributes
    execution.closed_at = event.timestamp
    if event.event_type is E.WORKFLOW_EXECUTION_COMPLETED:
        execution.result = a["result"]
    elif event.event_type is E.WORKFLOW_EXECUTION_FAILED:
        execution.failure = a["failure"]
    elif event.event_type is E.WORKFLOW_EXECUTION_CANCELED:
        execution.failure = {"type": "Canceled", "message": "the workflow was canceled",
                             "details": a.get("details")}
    elif event.event_type is E.WORKFLOW_EXECUTION_TERMINATED:
        execution.failure = {"type": "Terminated", "message": a.get("reason") or "terminated"}
    elif event.event_type is E.WORKFLOW_EXECUTION_TIMED_OUT:
        execution.failure = {"type": "TimedOut", "message": "the workflow execution timed out"}
    outcome.cancels.extend(_sql.leased_activity_tokens(execution.pk))
    _sql.delete_run_rows(execution.pk)


def _schedule_activity(execution: Execution, e: Event, new_tasks: list[Task],
                       new_timers: list[Timer], now: datetime) -> None:
    a = e.attributes
    options = {k: a[k] for k in ("retry_policy", "schedule_to_close_ms", "schedule_to_start_ms",
                                 "start_to_close_ms", "heartbeat_ms")}
    options["scheduled_at"] = now.isoformat()
    new_tasks.append(Task(execution=execution, kind=TaskKind.ACTIVITY, task_queue=a["task_queue"],
                          type_name=a["activity_type"], scheduled_event_id=e.event_id,
                          seq=a["seq"], input=a["input"], options=options, created_at=now))
    for key, kind in (("schedule_to_start_ms", TimerKind.ACTIVITY_SCHEDULE_TO_START),
                      ("schedule_to_close_ms", TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE)):
        if a.get(key):
            new_timers.append(Timer(execution=execution, kind=kind, seq=a["seq"],
                                    fire_at=now + timedelta(milliseconds=a[key]),
                                    created_at=now))


# ---- handing new tasks to the worker that completed the last one ---------------------------


def _lease_new_workflow_task(execution: Execution, t: decide.Transition, lessee: Lessee) -> None:
    """Start the run's newly scheduled workflow task on the lessee, if it caches the run."""
    wt = t.state.workflow_task
    if (wt is None or wt.started_event_id is not None or lessee.workflow_slots <= 0
            or execution.sticky_worker != lessee.worker_id
            or wt.scheduled_event_id < t.events[0].event_id):
        return
    if execution.workflow_type not in lessee.workflow_types:
        return
    step = decide.start_workflow_task(t.state, scheduled_event_id=wt.scheduled_event_id,
                                      worker=lessee.worker_id, now=t.now)
    t.events.extend(step.events)
    t.state = step.state
    lessee.workflow_slots -= 1


def _mark_workflow_task_started(execution: Execution, new_tasks: list[Task], e: Event,
                                lessee: Lessee | None, outcome: Outcome) -> None:
    """Lease the workflow task just started to the lessee and build its message."""
    from dispatch.deliveries import workflow_task_message  # deliveries imports this module

    assert lessee is not None, "a workflow task is started only for a lessee"
    scheduled = e.attributes["scheduled_event_id"]
    task = next((task for task in new_tasks if task.kind == TaskKind.WORKFLOW
                 and task.scheduled_event_id == scheduled), None)
    if task is None:
        task = Task.objects.select_for_update().get(
            execution=execution, kind=TaskKind.WORKFLOW, scheduled_event_id=scheduled)
    lease(task, lessee.worker_id, e.timestamp, lessee.workflow_task_timeout_seconds)
    if task.pk is not None:  # an existing row; one scheduled in this transaction is inserted
        _sql.update(task, LEASE_FIELDS)  # already leased
    sticky = execution.sticky_worker == lessee.worker_id and execution.sticky_next_event_id > 1
    first = execution.sticky_next_event_id if sticky else 1
    execution.sticky_worker = lessee.worker_id
    execution.sticky_next_event_id = e.event_id + 1
    outcome.deliveries.append(
        workflow_task_message(execution, task, first_event_id=first, recent=outcome.events)
    )


def _lease_new_activities(execution: Execution, new_tasks: list[Task], lessee: Lessee,
                          outcome: Outcome, now: datetime) -> None:
    from dispatch.deliveries import activity_task_message

    taken: list[Task] = []
    for task in new_tasks:
        if lessee.activity_slots <= 0:
            break
        if (task.kind == TaskKind.ACTIVITY and task.task_queue == lessee.task_queue
                and task.type_name in lessee.activity_types):
            lease(task, lessee.worker_id, now, lessee.lease_seconds)
            lessee.activity_slots -= 1
            taken.append(task)
    if not taken:
        return
    create_attempt_timers(taken, now)
    outcome.deliveries.extend(activity_task_message(execution, task) for task in taken)


def lease(task: Task, worker_id: str, now: datetime, seconds: float) -> None:
    """Lease ``task`` to ``worker_id`` (the caller saves it)."""
    task.state = TaskState.LEASED
    task.token = new_token(task.execution_id)
    task.lease_owner = worker_id
    task.leased_at = now
    task.lease_expires_at = now + timedelta(seconds=seconds)
    changes.on_commit_lease([changes.Lease(task.kind, task.task_queue, task.type_name,
                                           task.attempt,
                                           (now - task.created_at).total_seconds())])


def create_attempt_timers(tasks: list[Task], now: datetime) -> None:
    """The start-to-close / heartbeat deadlines of just-leased activity attempts."""
    timers = [timer for task in tasks if (timer := attempt_timer(task, now))]
    if timers:
        _sql.insert(timers)
        wakeup.on_commit(wakeup.TIMERS)


def attempt_timer(task: Task, now: datetime) -> Timer | None:
    """The start-to-close / heartbeat deadline of a just-leased activity attempt, if any."""
    deadline = attempt_deadline(task, now, last_heartbeat=now)
    if deadline is None:
        return None
    return Timer(execution_id=task.execution_id, kind=TimerKind.ACTIVITY_ATTEMPT, seq=task.seq,
                 fire_at=deadline, payload={"token": task.token},
                 created_at=now)


def attempt_deadline(task: Task, now: datetime, *, last_heartbeat: datetime) -> datetime | None:
    options = task.options
    deadlines = []
    if options.get("start_to_close_ms") and task.leased_at is not None:
        deadlines.append(task.leased_at + timedelta(milliseconds=options["start_to_close_ms"]))
    if options.get("heartbeat_ms"):
        deadlines.append(last_heartbeat + timedelta(milliseconds=options["heartbeat_ms"]))
    return min(deadlines) if deadlines else None
