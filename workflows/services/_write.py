"""Executing a decided transition: events, snapshot, and its effects, through the stores.

Every service locks the execution row, asks ``workflows.core.decide`` for a ``Transition``,
and hands it to ``write_transition``, inside the caller's one ``atomic(durable=True)``. What
rows a transition implies is decided in the core (``Transition.effects``); this module only
carries the effects out, batching the new task rows and the new timer rows into one insert
each, so a step costs the same few statements whatever it implies. Wake-ups for the
dispatcher and the timer manager are sent on commit by the stores.

A worker completing a task may be handed the run's next tasks in the same transaction
(``Lessee``): the workflow task of a run whose cache it holds, the activities it serves. A
start may likewise hand a new run's first workflow task to a connected worker with a free
slot. That saves the dispatcher a round trip and a transaction per step, which is where most
of a workflow's latency would go.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from dispatch.deliveries import activity_task_message, workflow_task_message
from dispatch.store import Task, TaskKind, tasks
from schedproject import sql
from sdk.protocol.limits import MAX_HISTORY_BYTES, MAX_HISTORY_EVENTS, event_bytes
from timers import store as timers
from workflows import changes
from workflows import store as executions
from workflows.core import decide, retry
from workflows.core import effects as fx
from workflows.core.events import Event, EventType
from workflows.models import Execution

E = EventType
SNAPSHOT_FIELDS = ["state", "next_event_id", "status", "sticky_worker", "sticky_next_event_id",
                   "last_task_failure", "history_size_bytes"]
# Limits of one run's history; a test may lower them.
MAX_EVENTS = MAX_HISTORY_EVENTS
MAX_BYTES = MAX_HISTORY_BYTES


@dataclass
class Lessee:
    """A connected worker that may take a run's new tasks in the same transaction.

    ``workflow_slots`` bounds the new runs it may be handed (a start's first workflow task);
    ``activity_slots`` the activities. A run it caches gets its next workflow task whatever
    the slots say."""

    worker_id: str
    task_queue: str
    workflow_types: frozenset[str]
    activity_types: frozenset[str]
    workflow_slots: int
    activity_slots: int
    lease_seconds: float
    workflow_task_timeout_seconds: float
    # It takes the events its workflow task's completion appended on the completion's ack
    # (``sdk.protocol.Hello.eager_workflow_tasks``; see ``_ack_events``).
    takes_events: bool = False


@dataclass
class Outcome:
    execution: Execution
    events: list[Event]
    # Task messages for the lessee, to send once the transaction has committed.
    deliveries: list[dict[str, Any]] = field(default_factory=list)
    # Cancel notices for activities other workers hold: (worker_id, token).
    cancels: list[tuple[str, str]] = field(default_factory=list)
    # The run continued as new: the successor to start once this run is saved.
    successor: fx.StartSuccessor | None = None
    # The child runs to start once this run is saved (``workflows.services.children``).
    children: list[fx.StartChild] = field(default_factory=list)
    # A start's: whether it started the run (False: the run was already open, and a start
    # under ``id_conflict_policy="use_existing"`` or a signal-with-start answered with it).
    started: bool = True
    # For the completion's ack: the events it appended after its workflow task started, when
    # the lessee takes them (``_ack_events``).
    ack_events: list[dict[str, Any]] | None = None


def write_transition(execution: Execution, t: decide.Transition, *,
                     lessee: Lessee | None = None, task: Task | None = None) -> Outcome:
    """Append ``t``'s events, update the snapshot, execute its effects. In an atomic block,
    with the execution row locked. ``task``: the run's task row the caller holds locked (the
    one a retry or a back-off acts on, or the workflow task the dispatcher starts). Its
    writes go to the database together (``schedproject.sql.deferring``)."""
    with sql.deferring():
        return _write_transition(execution, t, lessee=lessee, task=task)


def _write_transition(execution: Execution, t: decide.Transition, *,
                      lessee: Lessee | None, task: Task | None) -> Outcome:
    if any(e.event_type in (E.WORKFLOW_TASK_FAILED, E.WORKFLOW_TASK_TIMED_OUT)
           for e in t.events):
        # The cached copy ran a task that did not count: the next task replays from scratch.
        execution.sticky_worker = ""
    _fail_if_too_large(execution, t)
    if lessee is not None and t.events:
        _lease_new_workflow_task(execution, t, lessee)
    now = t.now
    executions.append(execution, t.events)
    outcome = Outcome(execution, list(t.events))
    new_tasks: list[Task] = []
    new_timers: list[timers.Timer] = []
    closed = False
    for effect in t.effects:
        if isinstance(effect, fx.CreateTask):
            new_tasks.append(tasks.build(execution, effect, now))
        elif isinstance(effect, fx.StartTimer):
            new_timers.append(timers.build(execution.pk, effect, now))
        elif isinstance(effect, fx.DropTask):
            tasks.delete_by_schedule(execution.pk, effect.kind, effect.scheduled_event_id)
        elif isinstance(effect, fx.DropTimers):
            if not _has_no_timers(task, effect):
                timers.delete(execution.pk, effect.kinds, effect.seq)
        elif isinstance(effect, fx.LeaseWorkflowTask):
            assert lessee is not None, "a workflow task is started only for a lessee"
            _mark_workflow_task_started(execution, [*new_tasks, *([task] if task else [])],
                                        effect, lessee, outcome, now)
        elif isinstance(effect, fx.RetryActivity):
            assert task is not None, "a retry acts on the task the caller holds"
            new_timers.append(_retry(execution, task, effect, now))
        elif isinstance(effect, fx.ReadyActivity):
            assert task is not None, "a back-off ends on the task the caller holds"
            tasks.make_ready(task)
        elif isinstance(effect, fx.RequestActivityCancel):
            notice = tasks.request_cancel(execution.pk, effect.scheduled_event_id)
            if notice is not None:
                outcome.cancels.append(notice)
        elif isinstance(effect, fx.CloseRun):
            closed = True
            _close(execution, effect, outcome, _reported(t, task))
            new_tasks.clear()
            new_timers.clear()
        elif isinstance(effect, fx.StartSuccessor):
            outcome.successor = effect
        elif isinstance(effect, fx.StartChild):
            outcome.children.append(effect)
        elif isinstance(effect, fx.ActOnChild):
            timer = child_timer(execution, effect, now)
            if timer is not None:
                new_timers.append(timer)
    if new_tasks:
        if lessee is not None:  # leased before the insert: one statement per task
            _lease_new_activities(execution, new_tasks, lessee, outcome, now)
        tasks.insert(new_tasks)
    timers.insert(new_timers)
    if lessee is not None and lessee.takes_events and not closed:
        _ack_events(execution, t, lessee, outcome)
    if t.events or not t.effects:  # a retry or a back-off alone leaves the run as it is
        _save_snapshot(execution, t, closed=closed)
        changes.on_commit(execution, t.events)
    if closed and execution.parent_id is not None:
        _tell_parent(execution, t.events[-1])
    return outcome


# ---- child workflows: what a child's close writes to its parent --------------------------

# A child's closing event, and what its parent records of it.
CHILD_OUTCOMES = {
    E.WORKFLOW_EXECUTION_COMPLETED: E.CHILD_WORKFLOW_EXECUTION_COMPLETED,
    E.WORKFLOW_EXECUTION_FAILED: E.CHILD_WORKFLOW_EXECUTION_FAILED,
    E.WORKFLOW_EXECUTION_CANCELED: E.CHILD_WORKFLOW_EXECUTION_CANCELED,
    E.WORKFLOW_EXECUTION_TERMINATED: E.CHILD_WORKFLOW_EXECUTION_TERMINATED,
    E.WORKFLOW_EXECUTION_TIMED_OUT: E.CHILD_WORKFLOW_EXECUTION_TIMED_OUT,
}


def _tell_parent(child: Execution, closing: Event) -> None:
    """The child run closed: record how in its parent, in the same transaction if the
    parent's row is free (``tell_parent``). A continue-as-new or a failed run that its retry
    policy starts again is not an end for the parent, which waits for the chain's last run;
    a parent that closed meanwhile hears nothing."""
    outcome = CHILD_OUTCOMES.get(closing.event_type)
    if closing.attributes.get("new_execution_run_id"):
        return  # the run failed and is retried: its retry ends the child
    if outcome is None or child.parent_id is None or not executions.is_open(child.parent_id):
        return
    payload = {"workflow_id": child.workflow_id, "run_id": str(child.run_id),
               "outcome": outcome.value, "attributes": closing.attributes}
    tell_parent(child.parent_id, fx.TimerKind.CHILD_CLOSED, payload, closing.timestamp)


def tell_parent(parent_id: int, kind: fx.TimerKind, payload: dict[str, Any],
                now: datetime) -> None:
    """Write what a child's transaction owes its parent (``kind``: the child ended, or the
    parent's signal reached it) to the parent, in this transaction if the parent's row is
    free; if another transaction holds it, a timer row due now on the parent carries it
    instead, fired in the parent's own transaction. A lock taken while holding the child's
    must never wait: a transaction holding the parent could be waiting for the child."""
    parent = executions.lock_if_free(parent_id)
    if parent is None:
        timers.insert([timers.build(parent_id, fx.StartTimer(kind, now, payload=payload), now)])
        return
    hear_from_child(parent, kind, payload, now)


def hear_from_child(parent: Execution, kind: fx.TimerKind, payload: dict[str, Any],
                    now: datetime) -> Outcome | None:
    """Record in ``parent`` (locked) what its child's transaction told it."""
    state = parent.core_state()
    if kind is fx.TimerKind.CHILD_CLOSED:
        t = decide.child_closed(state, workflow_id=str(payload["workflow_id"]),
                                run_id=str(payload["run_id"]),
                                outcome=E(payload["outcome"]), now=now,
                                **payload.get("attributes", {}))
    else:
        run_id = payload.get("run_id")
        t = decide.child_signaled(state, seq=int(payload["seq"]),
                                  run_id=None if run_id is None else str(run_id), now=now)
    return write_transition(parent, t) if t.events else None


def child_timer(parent: Execution, effect: fx.ActOnChild, now: datetime) -> timers.Timer | None:
    """The timer row that carries ``effect`` to the parent's child (see ``fx.ActOnChild``),
    on the child's open run; None if the child has no open run (it ended: nothing to do)."""
    child = executions.open_run(effect.workflow_id)
    if child is None or child.parent_id != parent.pk:
        return None
    return timers.build(child.pk, fx.StartTimer(effect.kind, now, payload={
        **effect.payload, "parent_id": parent.pk, "workflow_id": effect.workflow_id}), now)


# An activity's timers exist only for the options it was scheduled with (and its retry timer
# only while its task waits in backoff).
TIMED_ACTIVITY_OPTIONS = ("schedule_to_start_ms", "schedule_to_close_ms", "start_to_close_ms",
                          "heartbeat_ms")


def _has_no_timers(task: Task | None, effect: fx.DropTimers) -> bool:
    """Whether the timers ``effect`` drops cannot exist: they are the leased activity
    ``task``'s, and it was scheduled with no timeout (a statement saved on every step of a
    workflow of untimed activities)."""
    return (task is not None and task.kind == TaskKind.ACTIVITY and task.seq == effect.seq
            and task.state == fx.TaskState.LEASED
            and set(effect.kinds) <= set(fx.ACTIVITY_TIMER_KINDS)
            and not any(task.options.get(k) for k in TIMED_ACTIVITY_OPTIONS))


def _fail_if_too_large(execution: Execution, t: decide.Transition) -> None:
    """Count ``t``'s events into the run's history size; if the history passes
    ``MAX_EVENTS`` events or ``MAX_BYTES`` bytes and the run is still open, ``t`` closes it
    too (``history_too_large``)."""
    execution.history_size_bytes += sum(event_bytes(e.attributes) for e in t.events)
    length = t.state.next_event_id - 1
    if not t.state.is_open or (length <= MAX_EVENTS and execution.history_size_bytes <= MAX_BYTES):
        return
    failed = decide.fail_history_too_large(
        t.state, events=length, size_bytes=execution.history_size_bytes, max_events=MAX_EVENTS,
        max_bytes=MAX_BYTES, now=t.now)
    t.extend(failed)


def _save_snapshot(execution: Execution, t: decide.Transition, *, closed: bool) -> None:
    execution.state = t.state.to_dict()
    execution.next_event_id = t.state.next_event_id
    execution.status = t.state.status.value
    fields = list(SNAPSHOT_FIELDS)
    if closed:
        fields += ["result", "failure", "closed_at"]
        execution.sticky_worker = ""
    executions.save(execution, fields)


def _reported(t: decide.Transition, task: Task | None) -> str | None:
    """The token of the activity task ``t`` closes because its worker reported its end (an
    eager workflow task closing the run on its result): that worker is done with it."""
    if task is None or task.kind != TaskKind.ACTIVITY:
        return None
    ended = (E.ACTIVITY_TASK_COMPLETED, E.ACTIVITY_TASK_FAILED, E.ACTIVITY_TASK_CANCELED)
    if any(e.event_type in ended and e.attributes.get("seq") == task.seq for e in t.events):
        return str(task.token)
    return None


def _close(execution: Execution, effect: fx.CloseRun, outcome: Outcome,
           reported: str | None) -> None:
    """Close the run. The activities its workers hold are told to stop, but for the one whose
    worker reported its end in this transition (``reported``, its token)."""
    execution.closed_at = effect.closed_at
    if effect.result is not None:
        execution.result = effect.result
    if effect.failure is not None:
        execution.failure = dict(effect.failure)
    outcome.cancels.extend(notice for notice in tasks.leased_activity_tokens(execution.pk)
                           if notice[1] != reported)
    tasks.delete_run(execution.pk)
    timers.delete_run(execution.pk)


def _retry(execution: Execution, task: Task, effect: fx.RetryActivity,
           now: datetime) -> timers.Timer:
    """The attempt's task waits in backoff; returns its retry timer, to insert."""
    timers.delete(execution.pk, (fx.TimerKind.ACTIVITY_ATTEMPT,), effect.seq)
    tasks.unlease(task, to=fx.TaskState.BACKOFF, attempt=effect.attempt,
                  last_failure=dict(effect.last_failure))
    return timers.build(execution.pk, fx.StartTimer(
        fx.TimerKind.ACTIVITY_RETRY, effect.retry_at, seq=effect.seq,
        payload={"task_id": task.pk, "attempt": effect.attempt}), now)


# ---- handing new tasks to the worker that completed the last one ---------------------------


def _lease_new_workflow_task(execution: Execution, t: decide.Transition, lessee: Lessee) -> None:
    """Start the run's newly scheduled workflow task on the lessee: if it caches the run, or
    if this transition starts the run and the lessee serves its queue and has a free slot.

    Credit bounds the new runs a worker takes (and its activities), not the runs it already
    holds: a run's next workflow task goes back to the worker caching it even when all its
    workflow slots are held. Completing the run's own workflow task frees the slot the next
    one takes; after an activity, the worker holds one more workflow task than its slots,
    which it runs on its loop like any other (``sdk._worker`` does not bound workflow tasks),
    and the dispatcher gives it no new run until it is back under its credit."""
    wt = t.state.workflow_task
    if (wt is None or wt.started_event_id is not None
            or wt.scheduled_event_id < t.events[0].event_id
            or execution.workflow_type not in lessee.workflow_types):
        return
    if execution.sticky_worker != lessee.worker_id:
        if (t.events[0].event_type != E.WORKFLOW_EXECUTION_STARTED
                or execution.task_queue != lessee.task_queue or lessee.workflow_slots <= 0):
            return
        lessee.workflow_slots -= 1  # a new run takes a slot
    t.extend(decide.start_workflow_task(t.state, scheduled_event_id=wt.scheduled_event_id,
                                        worker=lessee.worker_id, now=t.now))


def _mark_workflow_task_started(execution: Execution, candidates: list[Task],
                                effect: fx.LeaseWorkflowTask, lessee: Lessee,
                                outcome: Outcome, now: datetime) -> None:
    """Lease the workflow task just started to the lessee and build its message."""
    scheduled = effect.scheduled_event_id
    task = next((task for task in candidates if task.kind == TaskKind.WORKFLOW
                 and task.scheduled_event_id == scheduled), None)
    if task is None:
        task = tasks.lock_by_schedule(execution.pk, TaskKind.WORKFLOW, scheduled)
    tasks.lease(task, lessee.worker_id, now, lessee.workflow_task_timeout_seconds)
    if task.pk is not None:  # an existing row; one scheduled in this transaction is inserted
        tasks.save_lease(task)  # already leased
    sticky = execution.sticky_worker == lessee.worker_id and execution.sticky_next_event_id > 1
    first = execution.sticky_next_event_id if sticky else 1
    execution.sticky_worker = lessee.worker_id
    execution.sticky_next_event_id = effect.started_event_id + 1
    outcome.deliveries.append(
        workflow_task_message(execution, task, first_event_id=first, recent=outcome.events)
    )


def _ack_events(execution: Execution, t: decide.Transition, lessee: Lessee,
                outcome: Outcome) -> None:
    """A workflow task the lessee ran completed in ``t`` and the run stays sticky to it, with
    no new workflow task for it: its ack carries the events ``t`` appended from the task's
    ``WorkflowTaskCompleted`` on, and the run's next task for it starts after them. Its
    cached copy then knows the whole history (it can run the next task eagerly on an
    activity's result), and that task's frame needs no history read."""
    if (execution.sticky_worker != lessee.worker_id or not t.state.is_open
            or any(d["type"] == "workflow_task" for d in outcome.deliveries)):
        return
    for i, event in enumerate(t.events):
        if (event.event_type is E.WORKFLOW_TASK_COMPLETED
                and event.attributes.get("worker") == lessee.worker_id):
            outcome.ack_events = [e.to_wire() for e in t.events[i:]]
            execution.sticky_next_event_id = t.state.next_event_id
            return


def _lease_new_activities(execution: Execution, new_tasks: list[Task], lessee: Lessee,
                          outcome: Outcome, now: datetime) -> None:
    taken: list[Task] = []
    for task in new_tasks:
        if lessee.activity_slots <= 0:
            break
        if (task.kind == TaskKind.ACTIVITY and task.task_queue == lessee.task_queue
                and task.type_name in lessee.activity_types):
            tasks.lease(task, lessee.worker_id, now, lessee.lease_seconds)
            lessee.activity_slots -= 1
            taken.append(task)
    if not taken:
        return
    start_attempt_timers(taken, now)
    outcome.deliveries.extend(activity_task_message(execution, task) for task in taken)


def start_attempt_timers(leased: Sequence[Task], now: datetime) -> None:
    """The start-to-close / heartbeat deadlines of just-leased activity attempts."""
    timers.insert([timer for task in leased if (timer := _attempt_timer(task, now))])


def _attempt_timer(task: Task, now: datetime) -> timers.Timer | None:
    deadline = retry.attempt_deadline(task.options, leased_at=task.leased_at,
                                      last_heartbeat=now)
    if deadline is None:
        return None
    return timers.build(task.execution_id, fx.StartTimer(
        fx.TimerKind.ACTIVITY_ATTEMPT, deadline, seq=task.seq, payload={"token": task.token}),
        now)


def lock_execution(execution_id: int) -> Execution:
    """Lock and return the execution row. Callers lock it before any task or timer row."""
    return executions.lock(execution_id)


__all__ = ["Lessee", "Outcome", "hear_from_child", "lock_execution", "start_attempt_timers",
           "tell_parent", "write_transition"]
