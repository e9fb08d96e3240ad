"""Firing durable timers: one transition per timer, on the run the timer belongs to.

What a timer's firing means is decided in the core (``decide.fire_timer``, the activity
timeouts and back-off, the workflow timeout); this module locks the run and the timer (and
the activity's task when one is involved), asks the core, and writes the transition through
``workflows.services``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.db import transaction

from dispatch.metrics import item_failed
from dispatch.store import NotLeader, TaskState, check_term, tasks
from schedproject.transactions import atomic
from workflows import store as executions
from workflows.core import decide
from workflows.core.effects import TimerKind
from workflows.core.state import Status
from workflows.models import Execution
from workflows.services import (
    CHILD_TIMER_KINDS,
    Outcome,
    act_on_child,
    hear_from_child,
    rejected,
    time_out_run,
    write_activity_attempt,
    write_transition,
)

from . import store
from .store import Timer

log = logging.getLogger("sched.timers")
RETRY_FAILED_SECONDS = 1.0


def timer_fire(*, timer_id: int, now: datetime, term: int | None = None) -> Outcome | None:
    """Fire one due timer. A timer that is gone (fired or canceled meanwhile) or that no
    longer applies (its activity attempt is over) is dropped and changes nothing else.
    ``term``: the timer manager's leadership term, checked in the same transaction."""
    with atomic():
        if term is not None:
            check_term("timers", term)
        return fire_locked(timer_id=timer_id, execution_id=None, now=now)


def timers_fire(*, due: Sequence[tuple[int, int]], term: int,
                clock: Callable[[], datetime]) -> list[tuple[int, datetime, Outcome | None]]:
    """Fire a batch of due ``(timer id, execution id)`` in one transaction: one commit for
    the batch. If a timer fails to fire, the batch is rolled back and fired again with each
    timer in a savepoint of its own, so that one (logged, tried again a little later, and
    counted in ``sched_item_errors_total{loop="timers"}``) takes no other with it. Returns
    (timer id, when fired, outcome) of each that fired.

    The runs are locked in the order of their ids, as a group of completions locks them
    (``schedproject.dbthread``): two transactions that each lock several runs, in one order,
    never wait for each other."""
    due = sorted(due, key=lambda item: item[1])
    try:
        return _fire_batch(due, term, clock, isolate=False)
    except NotLeader:
        raise
    except Exception as exc:
        log.warning("firing %d timers failed (%r); firing them one at a time", len(due), exc)
        return _fire_batch(due, term, clock, isolate=True)


def _fire_batch(due: Sequence[tuple[int, int]], term: int, clock: Callable[[], datetime], *,
                isolate: bool) -> list[tuple[int, datetime, Outcome | None]]:
    fired: list[tuple[int, datetime, Outcome | None]] = []
    with atomic():
        check_term("timers", term)
        for timer_id, execution_id in due:
            now = clock()
            if not isolate:
                fired.append((timer_id, now, fire_locked(
                    timer_id=timer_id, execution_id=execution_id, now=now)))
                continue
            try:
                with transaction.atomic():
                    outcome = fire_locked(timer_id=timer_id, execution_id=execution_id, now=now)
            except Exception:
                item_failed("timers")
                log.exception("timer %s of execution %s could not fire; trying again in %s s",
                              timer_id, execution_id, RETRY_FAILED_SECONDS)
                store.reschedule(timer_id, now + timedelta(seconds=RETRY_FAILED_SECONDS))
                continue
            fired.append((timer_id, now, outcome))
    return fired


def fire_locked(*, timer_id: int, execution_id: int | None, now: datetime) -> Outcome | None:
    """Fire one timer inside the caller's transaction."""
    if execution_id is None:
        execution_id = store.execution_of(timer_id)
        if execution_id is None:
            return None
    execution = executions.lock(execution_id)
    timer = store.lock(timer_id)
    if timer is None:
        return None
    store.delete_one(timer.pk)
    kind = TimerKind(timer.kind)
    if kind in CHILD_TIMER_KINDS:  # for the child's open run, maybe not this one
        return act_on_child(execution, kind, timer.payload, now)
    if execution.status != Status.RUNNING:
        return None
    return _FIRE[kind](execution, timer, now)


def _decided(step: Callable[[], decide.Transition]) -> decide.Transition:
    try:
        return step()
    except decide.Rejected as exc:
        raise rejected(exc) from None


def _user(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    assert timer.seq is not None
    try:
        t = decide.fire_timer(execution.core_state(), seq=timer.seq, now=now)
    except decide.Rejected:
        return None
    return write_transition(execution, t)


def _workflow_timeout(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    return time_out_run(execution, now)


def _workflow_task_retry(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    t = decide.retry_workflow_task(execution.core_state(), now=now)
    return write_transition(execution, t) if t.events else None


def _activity_retry(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    task = tasks.lock_activity(execution.pk, timer.seq)
    if task is None or task.seq is None:
        return None
    t = decide.end_activity_backoff(execution.core_state(), seq=task.seq,
                                    task_state=TaskState(task.state), now=now)
    if t.effects:
        write_transition(execution, t, task=task)
    return None


def _activity_attempt(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    """The running attempt passed its start-to-close or heartbeat deadline."""
    task = tasks.lock_activity(execution.pk, timer.seq)
    if task is None or task.token != timer.payload.get("token") or task.seq is None:
        return None
    seq = task.seq
    t = _decided(lambda: decide.time_out_activity_attempt(
        execution.core_state(), seq=seq, attempt=task.attempt, options=task.options,
        leased_at=task.leased_at, worker=task.lease_owner or None, now=now))
    return write_activity_attempt(execution, task, t)


def _schedule_to_start(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    task = tasks.lock_activity(execution.pk, timer.seq)
    if task is None or task.seq is None:
        return None
    seq = task.seq
    t = _decided(lambda: decide.time_out_activity_schedule_to_start(
        execution.core_state(), seq=seq, task_state=TaskState(task.state),
        attempt=task.attempt, now=now))
    return write_transition(execution, t) if t.events else None


def _schedule_to_close(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    task = tasks.lock_activity(execution.pk, timer.seq)
    if task is None or task.seq is None:
        return None
    seq = task.seq
    worker = task.lease_owner if task.state == TaskState.LEASED else None
    t = _decided(lambda: decide.time_out_activity_schedule_to_close(
        execution.core_state(), seq=seq, attempt=task.attempt, worker=worker, now=now))
    outcome = write_transition(execution, t)
    if worker:  # the attempt's task is dropped with the activity: tell its worker
        outcome.cancels.append((worker, task.token))
    return outcome


def _from_child(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    """What a child's transaction could not write to its parent, busy then."""
    return hear_from_child(execution, TimerKind(timer.kind), timer.payload, now)


_FIRE: dict[TimerKind, Callable[[Execution, Timer, datetime], Outcome | None]] = {
    TimerKind.USER: _user,
    TimerKind.WORKFLOW_TIMEOUT: _workflow_timeout,
    TimerKind.WORKFLOW_TASK_RETRY: _workflow_task_retry,
    TimerKind.ACTIVITY_RETRY: _activity_retry,
    TimerKind.ACTIVITY_ATTEMPT: _activity_attempt,
    TimerKind.ACTIVITY_SCHEDULE_TO_START: _schedule_to_start,
    TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE: _schedule_to_close,
    TimerKind.CHILD_CLOSED: _from_child,
    TimerKind.CHILD_SIGNALED: _from_child,
}
