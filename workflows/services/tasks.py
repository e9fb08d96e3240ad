"""Services for task completions from workers, fenced by the task's token.

A token names one lease of one task (``<task id>.<random>``, new at every lease). A
completion whose token is not the task's current one — stale, duplicate, forged, or for a
lease that expired and went to another worker — is refused with ``stale_task`` and writes
nothing. Each service locks the execution row first, then the task row.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from dispatch import wakeup
from dispatch.models import Task, TaskKind, TaskState
from schedproject.transactions import atomic
from timers.models import Timer, TimerKind
from workflows.core import commands as c
from workflows.core import decide
from workflows.core.events import EventType
from workflows.core.retry import retry_delay_ms
from workflows.errors import Conflict, InvalidInput
from workflows.models import Execution, HistoryEvent

from . import _sql
from ._write import (
    Lessee,
    Outcome,
    attempt_deadline,
    execution_id_from_token,
    lock_execution,
    write_transition,
)
from .executions import _create_run

E = EventType


def stale(message: str = "the task is not leased with that token") -> Conflict:
    return Conflict(message, code="stale_task")


def check_lease(token: str, *, kind: str, worker_id: str | None) -> tuple[Execution, Task]:
    """Lock the execution, then the task, and check ``token`` is the task's live lease.

    Must run inside the service's atomic block.
    """
    execution_id = execution_id_from_token(token)
    if execution_id is None:
        raise stale()
    try:
        execution = lock_execution(execution_id)
    except Execution.DoesNotExist:
        raise stale() from None
    task = _sql.lock_leased_task(token)
    if (task is None or task.token != token or task.state != TaskState.LEASED
            or task.kind != kind or (worker_id is not None and task.lease_owner != worker_id)):
        raise stale()
    return execution, task


def _rejected(exc: decide.Rejected) -> Conflict:
    return Conflict(exc.message, code=exc.code)


# ---- workflow tasks ------------------------------------------------------------------------


def workflow_task_complete(*, token: str, commands: list[Any], worker_id: str | None = None,
                           lessee: Lessee | None = None) -> Outcome:
    try:
        parsed = c.parse_commands(commands)
    except c.InvalidCommand as exc:
        raise InvalidInput(str(exc), code="invalid_command") from None
    continue_as_new = parsed[-1] if parsed and isinstance(parsed[-1], c.ContinueAsNew) else None
    if continue_as_new is not None:
        parsed = parsed[:-1]
        if any(isinstance(cmd, c.TERMINAL_COMMANDS) for cmd in parsed):
            raise Conflict("a closing command must be the last and only one",
                           code="invalid_command")
    with atomic():
        execution, task = check_lease(token, kind=TaskKind.WORKFLOW, worker_id=worker_id)
        now = timezone.now()
        try:
            t = decide.complete_workflow_task(
                execution.core_state(), scheduled_event_id=task.scheduled_event_id,
                commands=parsed, worker=task.lease_owner, now=now)
        except decide.Rejected as exc:
            raise _rejected(exc) from None
        execution.last_task_failure = None
        cancels = _cancel_activities(execution, t)
        successor = None
        if continue_as_new is not None and t.state.is_open and t.state.workflow_task is None:
            successor = _continue_as_new(execution, t, continue_as_new)
        outcome = write_transition(execution, t, lessee=lessee)
        outcome.cancels.extend(cancels)
        if successor is not None:
            successor()
        return outcome


def _cancel_activities(execution: Execution, t: decide.Transition) -> list[tuple[str, str]]:
    """For each activity the workflow asked to cancel: one not running is canceled at once;
    the worker running one is told, and the activity sees it at its next heartbeat."""
    notices: list[tuple[str, str]] = []
    if not t.state.is_open:
        return notices  # the same task closed the run: every task of it is dropped
    for e in list(t.events):
        if e.event_type is not E.ACTIVITY_TASK_CANCEL_REQUESTED:
            continue
        task = Task.objects.select_for_update().filter(
            execution=execution, kind=TaskKind.ACTIVITY,
            scheduled_event_id=e.attributes["scheduled_event_id"]).first()
        if task is not None and task.state == TaskState.LEASED:
            task.cancel_requested = True
            task.save(update_fields=["cancel_requested"])
            notices.append((task.lease_owner, task.token))
            continue
        step = decide.close_activity(t.state, seq=e.attributes["seq"],
                                     outcome=E.ACTIVITY_TASK_CANCELED, now=t.now,
                                     attempt=task.attempt if task else 1, worker=None,
                                     details=None)
        t.events.extend(step.events)
        t.state = step.state
    return notices


def _continue_as_new(execution: Execution, t: decide.Transition,
                     cmd: c.ContinueAsNew) -> Callable[[], None]:
    """Close the run as continued-as-new; return the step that starts its successor (run
    after the closed run is saved, so the one-open-run constraint holds)."""
    new_run_id = uuid.uuid4()
    workflow_type = cmd.workflow_type or execution.workflow_type
    task_queue = cmd.task_queue or execution.task_queue
    t.add(E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW, new_run_id=str(new_run_id),
          workflow_type=workflow_type, task_queue=task_queue, input=cmd.input)

    started = HistoryEvent.objects.get(execution=execution, event_id=1)

    def start_successor() -> None:
        # Each run of the chain gets the execution timeout the first was started with.
        _create_run(workflow_id=execution.workflow_id, workflow_type=workflow_type,
                    input=cmd.input, task_queue=task_queue,
                    execution_timeout_ms=started.attributes.get("execution_timeout_ms"),
                    parent=execution.parent, continued_from=execution, run_id=new_run_id)

    return start_successor


def workflow_task_fail(*, token: str, cause: str, failure: dict[str, Any],
                       worker_id: str | None = None) -> Outcome:
    """The worker could not run the task (non-determinism, a bug): record it; it is retried
    after a back-off, so deploying fixed code resumes the run."""
    with atomic():
        execution, task = check_lease(token, kind=TaskKind.WORKFLOW, worker_id=worker_id)
        try:
            t = decide.fail_workflow_task(
                execution.core_state(), scheduled_event_id=task.scheduled_event_id,
                cause=cause[:64], failure=failure, now=timezone.now())
        except decide.Rejected as exc:
            raise _rejected(exc) from None
        execution.last_task_failure = t.events[-1].attributes["failure"] | {
            "cause": cause[:64], "attempt": task.attempt}
        return write_transition(execution, t)


def workflow_task_time_out(execution: Execution, task: Task, now: datetime) -> Outcome | None:
    """A started workflow task whose lease ran out. The caller holds the execution lock."""
    try:
        t = decide.time_out_workflow_task(execution.core_state(),
                                          scheduled_event_id=task.scheduled_event_id, now=now)
    except decide.Rejected:
        task.delete()
        return None
    return write_transition(execution, t)


# ---- activity tasks ------------------------------------------------------------------------


def activity_task_complete(*, token: str, result: Any, worker_id: str | None = None,
                           lessee: Lessee | None = None) -> Outcome:
    with atomic():
        execution, task = check_lease(token, kind=TaskKind.ACTIVITY, worker_id=worker_id)
        return _close_activity(execution, task, E.ACTIVITY_TASK_COMPLETED, lessee=lessee,
                               worker=task.lease_owner, result=result)


def _close_activity(execution: Execution, task: Task, outcome: EventType, *,
                    lessee: Lessee | None, worker: str | None, now: datetime | None = None,
                    **attributes: Any) -> Outcome:
    assert task.seq is not None
    try:
        t = decide.close_activity(execution.core_state(), seq=task.seq, outcome=outcome,
                                  now=now or timezone.now(), attempt=task.attempt,
                                  worker=worker, **attributes)
    except decide.Rejected as exc:
        raise _rejected(exc) from None
    return write_transition(execution, t, lessee=lessee)


def activity_task_fail(*, token: str, failure: dict[str, Any], canceled: bool = False,
                       worker_id: str | None = None,
                       lessee: Lessee | None = None) -> Outcome | None:
    """An attempt failed: retry it after its back-off, or record the activity's failure.

    Returns None when the activity will be retried (nothing is appended to history).
    """
    failure = c.normalize_failure(failure)
    with atomic():
        execution, task = check_lease(token, kind=TaskKind.ACTIVITY, worker_id=worker_id)
        if canceled and task.cancel_requested:
            return _close_activity(execution, task, E.ACTIVITY_TASK_CANCELED, lessee=lessee,
                                   worker=task.lease_owner, details=failure.get("details"))
        return fail_attempt(execution, task, failure, lessee=lessee, now=timezone.now())


def fail_attempt(execution: Execution, task: Task, failure: dict[str, Any], *,
                 lessee: Lessee | None = None, now: datetime,
                 timeout_type: str | None = None) -> Outcome | None:
    """Retry a failed attempt or close the activity as failed / timed out. The caller holds
    the execution and task locks."""
    policy = c.RetryPolicy.from_dict(task.options.get("retry_policy"))
    deadline = None
    if task.options.get("schedule_to_close_ms"):
        scheduled_at = datetime.fromisoformat(task.options["scheduled_at"])
        deadline = scheduled_at + timedelta(milliseconds=task.options["schedule_to_close_ms"])
    delay = retry_delay_ms(policy, attempt=task.attempt, failure=failure, now=now,
                           deadline=deadline)
    worker = task.lease_owner or None
    if delay is None:
        if timeout_type is not None:
            return _close_activity(execution, task, E.ACTIVITY_TASK_TIMED_OUT, lessee=lessee,
                                   worker=worker, now=now, timeout_type=timeout_type,
                                   failure=failure)
        return _close_activity(execution, task, E.ACTIVITY_TASK_FAILED, lessee=lessee,
                               worker=worker, now=now, failure=failure)
    Timer.objects.filter(execution=execution, kind=TimerKind.ACTIVITY_ATTEMPT,
                         seq=task.seq).delete()
    task.state = TaskState.BACKOFF
    task.attempt += 1
    task.token = ""
    task.lease_owner = ""
    task.leased_at = None
    task.lease_expires_at = None
    task.last_failure = failure | {"attempt": task.attempt - 1}
    task.save(update_fields=["state", "attempt", "token", "lease_owner", "leased_at",
                             "lease_expires_at", "last_failure"])
    Timer.objects.create(execution=execution, kind=TimerKind.ACTIVITY_RETRY, seq=task.seq,
                         fire_at=now + timedelta(milliseconds=delay),
                         payload={"task_id": task.pk, "attempt": task.attempt}, created_at=now)
    wakeup.on_commit(wakeup.TIMERS)
    return None


def activity_task_heartbeat(*, token: str, details: Any,
                            worker_id: str | None = None) -> bool:
    """Record a heartbeat; push the heartbeat deadline out. Returns whether the activity has
    been asked to cancel."""
    execution_id = execution_id_from_token(token)
    if execution_id is None:
        raise stale()
    with atomic():
        try:
            lock_execution(execution_id)  # the execution first, as every transition does
        except Execution.DoesNotExist:
            raise stale() from None
        task = _sql.lock_leased_task(token)
        if (task is None or task.token != token or task.state != TaskState.LEASED
                or task.kind != TaskKind.ACTIVITY
                or (worker_id is not None and task.lease_owner != worker_id)):
            raise stale()
        now = timezone.now()
        task.heartbeat_details = details
        task.last_heartbeat_at = now
        task.save(update_fields=["heartbeat_details", "last_heartbeat_at"])
        if task.options.get("heartbeat_ms"):
            deadline = attempt_deadline(task, now, last_heartbeat=now)
            Timer.objects.filter(execution_id=task.execution_id, kind=TimerKind.ACTIVITY_ATTEMPT,
                                 seq=task.seq).update(fire_at=deadline)
        return task.cancel_requested
