"""Firing a durable timer: one transition per timer, on the run the timer belongs to."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta

from django.db import transaction

from dispatch import wakeup
from dispatch.fencing import check_term
from dispatch.models import Task, TaskKind, TaskState
from schedproject.transactions import atomic
from timers.models import Timer, TimerKind
from workflows.core import decide
from workflows.core.events import EventType
from workflows.models import Execution

from ._write import Outcome, lock_execution, write_transition
from .tasks import _close_activity, fail_attempt

E = EventType
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
    """Fire a batch of due ``(timer id, execution id)`` in one transaction, each in a savepoint
    of its own: one commit for the batch, and a timer that fails to fire (it is logged and
    tried again a little later) takes no other with it. Returns (timer id, when fired, outcome)
    of each that fired."""
    fired: list[tuple[int, datetime, Outcome | None]] = []
    with atomic():
        check_term("timers", term)
        for timer_id, execution_id in due:
            now = clock()
            try:
                with transaction.atomic():
                    outcome = fire_locked(timer_id=timer_id, execution_id=execution_id, now=now)
            except Exception:
                log.exception("timer %s could not fire; trying again in %s s", timer_id,
                              RETRY_FAILED_SECONDS)
                Timer.objects.filter(pk=timer_id).update(
                    fire_at=now + timedelta(seconds=RETRY_FAILED_SECONDS))
                continue
            fired.append((timer_id, now, outcome))
    return fired


def fire_locked(*, timer_id: int, execution_id: int | None, now: datetime) -> Outcome | None:
    """Fire one timer inside the caller's transaction."""
    if execution_id is None:
        row = Timer.objects.filter(pk=timer_id).values("execution_id").first()
        if row is None:
            return None
        execution_id = row["execution_id"]
    execution = lock_execution(execution_id)
    timer = Timer.objects.select_for_update(skip_locked=True).filter(pk=timer_id).first()
    if timer is None:
        return None
    timer.delete()
    if execution.status != "running":
        return None
    return _FIRE[timer.kind](execution, timer, now)


def _user(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    assert timer.seq is not None
    try:
        t = decide.fire_timer(execution.core_state(), seq=timer.seq, now=now)
    except decide.Rejected:
        return None
    return write_transition(execution, t)


def _workflow_timeout(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    return write_transition(execution, decide.time_out_workflow(execution.core_state(), now=now))


def _workflow_task_retry(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    t = decide.retry_workflow_task(execution.core_state(), now=now)
    return write_transition(execution, t) if t.events else None


def _activity_task(execution: Execution, timer: Timer) -> Task | None:
    return Task.objects.select_for_update().filter(
        execution=execution, kind=TaskKind.ACTIVITY, seq=timer.seq).first()


def _activity_retry(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    task = _activity_task(execution, timer)
    if task is None or task.state != TaskState.BACKOFF:
        return None
    task.state = TaskState.READY
    task.save(update_fields=["state"])
    wakeup.on_commit(wakeup.DISPATCH)
    return None


def _activity_attempt(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    """The running attempt passed its start-to-close or heartbeat deadline."""
    task = _activity_task(execution, timer)
    if task is None or task.token != timer.payload.get("token"):
        return None
    options = task.options
    timeout_type = "heartbeat"
    if options.get("start_to_close_ms") and task.leased_at is not None:
        elapsed_ms = (now - task.leased_at).total_seconds() * 1000
        if elapsed_ms >= options["start_to_close_ms"]:
            timeout_type = "start_to_close"
    failure = {"type": "TimeoutError", "message": f"activity {timeout_type} timeout",
               "details": {"timeout_type": timeout_type}}
    outcome = fail_attempt(execution, task, failure, now=now, timeout_type=timeout_type)
    return outcome


def _schedule_to_start(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    task = _activity_task(execution, timer)
    if task is None or task.state == TaskState.LEASED or task.attempt > 1:
        return None
    failure = {"type": "TimeoutError", "message": "activity schedule_to_start timeout",
               "non_retryable": True}
    return _close_activity(execution, task, E.ACTIVITY_TASK_TIMED_OUT, lessee=None, worker=None,
                           now=now, timeout_type="schedule_to_start", failure=failure)


def _schedule_to_close(execution: Execution, timer: Timer, now: datetime) -> Outcome | None:
    task = _activity_task(execution, timer)
    if task is None:
        return None
    failure = {"type": "TimeoutError", "message": "activity schedule_to_close timeout",
               "non_retryable": True}
    worker = task.lease_owner if task.state == TaskState.LEASED else None
    outcome = _close_activity(execution, task, E.ACTIVITY_TASK_TIMED_OUT, lessee=None,
                              worker=worker, now=now, timeout_type="schedule_to_close",
                              failure=failure)
    if worker:
        outcome.cancels.append((worker, task.token))
    return outcome


_FIRE: dict[str, Callable[[Execution, Timer, datetime], Outcome | None]] = {
    TimerKind.USER: _user,
    TimerKind.WORKFLOW_TIMEOUT: _workflow_timeout,
    TimerKind.WORKFLOW_TASK_RETRY: _workflow_task_retry,
    TimerKind.ACTIVITY_RETRY: _activity_retry,
    TimerKind.ACTIVITY_ATTEMPT: _activity_attempt,
    TimerKind.ACTIVITY_SCHEDULE_TO_START: _schedule_to_start,
    TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE: _schedule_to_close,
}
