"""Services for task completions from workers, fenced by the task's token.

A token names one lease of one task (``<execution id>.<random>``, new at every lease). A
completion whose token is not the task's current one — stale, duplicate, forged, or for a
lease that expired and went to another worker — is refused with ``stale_task`` and writes
nothing. Each service locks the execution row first, then the task row
(``dispatch.store.tasks.lock_leased``, the one lease check).
"""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from dispatch.store import Task, TaskKind, tasks
from schedproject.transactions import atomic
from sdk.protocol.payloads import payload_problem
from timers import store as timers
from workflows import store as executions
from workflows.core import commands as c
from workflows.core import decide, retry
from workflows.core.events import EventType
from workflows.errors import Conflict, InvalidInput
from workflows.models import Execution

from ._write import Lessee, Outcome, write_transition
from .children import child_run_ids, start_children
from .executions import start_successor

E = EventType


def stale(message: str = "the task is not leased with that token") -> Conflict:
    return Conflict(message, code="stale_task")


def rejected(exc: decide.Rejected) -> Conflict:
    return Conflict(exc.message, code=exc.code)


def check_lease(token: str, *, kind: TaskKind, worker_id: str | None) -> tuple[Execution, Task]:
    """Lock the execution, then the task, and check ``token`` is the task's live lease.

    Must run inside the service's atomic block.
    """
    locked = tasks.lock_leased_run(token, kind=kind, owner=worker_id)
    if locked is None:
        raise stale()
    return locked


# ---- workflow tasks ------------------------------------------------------------------------


def workflow_task_complete(*, token: str, commands: list[Any], worker_id: str | None = None,
                           lessee: Lessee | None = None) -> Outcome:
    try:
        parsed = c.parse_commands(commands)
    except c.InvalidCommand as exc:
        raise InvalidInput(str(exc), code="invalid_command") from None
    continues = bool(parsed) and isinstance(parsed[-1], c.ContinueAsNew)
    if continues:
        try:
            decide.check_closing(parsed)
        except decide.Rejected as exc:
            raise rejected(exc) from None
    with atomic():
        execution, task = check_lease(token, kind=TaskKind.WORKFLOW, worker_id=worker_id)
        leased = None
        cancels = sorted({cmd.seq for cmd in parsed if isinstance(cmd, c.RequestCancelActivity)})
        if cancels:
            leased = tasks.lock_leased_activities(execution.pk, cancels)
        timeout_ms = None
        started = None
        fails = bool(parsed) and isinstance(parsed[-1], c.FailWorkflow)
        if continues or fails:  # each run of the chain gets the execution timeout of the first
            started = executions.started_attributes(execution)
            timeout_ms = started.get("execution_timeout_ms")
        retries = fails and started is not None and started.get("retry_policy") is not None
        try:
            t = decide.complete_workflow_task(
                execution.core_state(), scheduled_event_id=task.scheduled_event_id,
                commands=parsed, worker=task.lease_owner, now=timezone.now(),
                leased_activities=leased,
                successor_run_id=str(uuid.uuid4()) if continues or retries else None,
                execution_timeout_ms=timeout_ms, child_run_ids=child_run_ids(parsed),
                started=started if retries else None)
        except decide.Rejected as exc:
            raise rejected(exc) from None
        execution.last_task_failure = None
        outcome = write_transition(execution, t, lessee=lessee)
        if outcome.successor is not None:
            start_successor(execution, outcome.successor)
        if outcome.children:
            start_children(execution, outcome.children)
        return outcome


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
            raise rejected(exc) from None
        execution.last_task_failure = t.events[-1].attributes["failure"] | {
            "cause": cause[:64], "attempt": task.attempt}
        return write_transition(execution, t)


def workflow_task_start(execution: Execution, task: Task, lessee: Lessee,
                        now: datetime) -> Outcome | None:
    """Start a ready workflow task on the lessee (the dispatcher picked it). The caller holds
    the execution and task locks. An orphaned task (its run moved on) is dropped: None."""
    try:
        t = decide.start_workflow_task(execution.core_state(),
                                       scheduled_event_id=task.scheduled_event_id,
                                       worker=lessee.worker_id, now=now)
    except decide.Rejected:
        tasks.delete(task)
        return None
    return write_transition(execution, t, lessee=lessee, task=task)


def workflow_task_time_out(execution: Execution, task: Task, now: datetime) -> Outcome | None:
    """A started workflow task whose lease ran out. The caller holds the execution lock."""
    try:
        t = decide.time_out_workflow_task(execution.core_state(),
                                          scheduled_event_id=task.scheduled_event_id, now=now)
    except decide.Rejected:
        tasks.delete(task)
        return None
    return write_transition(execution, t)


# ---- activity tasks ------------------------------------------------------------------------


def activity_task_complete(*, token: str, result: Any, worker_id: str | None = None,
                           lessee: Lessee | None = None,
                           workflow_task: Any = None) -> Outcome:
    """``workflow_task``: the run's next workflow task, run by the completing worker on this
    result (``sdk.protocol.ActivityTaskCompleted``): recorded with the completion when the
    run is as the worker saw it (``eager_workflow_task``), else the completion alone."""
    with atomic():
        execution, task = check_lease(token, kind=TaskKind.ACTIVITY, worker_id=worker_id)
        if workflow_task is not None and lessee is not None:
            outcome = eager_workflow_task(execution, task, result, workflow_task, lessee)
            if outcome is not None:
                return outcome
        return activity_close(execution, task, E.ACTIVITY_TASK_COMPLETED, lessee=lessee,
                              worker=task.lease_owner, result=result)


# How far a worker's ``started_at`` may be from the engine's clock (clocks of different
# machines, and the frame's way to the engine): ahead of it by ``EAGER_CLOCK_SKEW`` at most,
# behind it by ``EAGER_MAX_LAG``. Leases and timers of the transition count from it.
EAGER_CLOCK_SKEW = timedelta(seconds=1)
EAGER_MAX_LAG = timedelta(seconds=2)


def eager_workflow_task(execution: Execution, task: Task, result: Any, proposal: Any,
                        lessee: Lessee) -> Outcome | None:
    """Record an activity's completion and the workflow task its worker ran on the result in
    one transition, or None (nothing written) when the run is not as the worker saw it.

    The worker ran the task on its cached copy of the run, expecting the activity's
    ``ActivityTaskStarted`` to be event ``first_event_id``: it had then seen every event of
    the run, and its copy is the history's. So the task's commands are the ones a task
    dispatched now would have produced, provided that nothing else happened to the run in
    between (the next event id is the one expected and no workflow task is scheduled),
    the run is still sticky to this worker, its commands need nothing but the run
    (``decide.EAGER_COMMANDS``), and the task's start, the workflow's time during it, is
    within ``EAGER_MAX_LAG`` behind and ``EAGER_CLOCK_SKEW`` ahead of the engine's clock and
    not before the run's last event (the workflow's time never goes back). The caller holds
    the execution and task locks."""
    if payload_problem(proposal) is not None:
        return None
    try:
        first = proposal["first_event_id"]
        started_at = datetime.fromisoformat(proposal["started_at"])
        commands = c.parse_commands(proposal["commands"])
    except (KeyError, TypeError, ValueError):  # InvalidCommand is a ValueError
        return None
    state = execution.core_state()
    if (not lessee.takes_events  # the worker learns the task's events from the ack
            or type(first) is not int or started_at.tzinfo is None or task.seq is None
            or task.leased_at is None or task.lease_owner != lessee.worker_id
            or execution.sticky_worker != lessee.worker_id
            or execution.workflow_type not in lessee.workflow_types
            or not state.is_open or state.workflow_task is not None
            or state.next_event_id != first):
        return None
    now = timezone.now()
    last = executions.event_time(execution, first - 1)
    if (not now - EAGER_MAX_LAG <= started_at <= now + EAGER_CLOCK_SKEW
            or last is None or started_at < last or started_at < task.leased_at):
        return None
    try:
        t = decide.complete_activity_and_workflow_task(
            state, seq=task.seq, attempt=task.attempt, worker=lessee.worker_id, result=result,
            now=started_at, commands=commands)
    except decide.Rejected:
        return None
    execution.last_task_failure = None
    # The run's next task for this worker starts after what the ack carries (``_ack_events``).
    return write_transition(execution, t, lessee=lessee, task=task)


def activity_close(execution: Execution, task: Task, outcome: EventType, *,
                   lessee: Lessee | None, worker: str | None, now: datetime | None = None,
                   **attributes: Any) -> Outcome:
    """Record the activity's final ``outcome``. The caller holds the execution and task
    locks."""
    assert task.seq is not None
    try:
        t = decide.close_activity(execution.core_state(), seq=task.seq, outcome=outcome,
                                  now=now or timezone.now(), attempt=task.attempt,
                                  worker=worker, **attributes)
    except decide.Rejected as exc:
        raise rejected(exc) from None
    return write_transition(execution, t, lessee=lessee, task=task)


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
            return activity_close(execution, task, E.ACTIVITY_TASK_CANCELED, lessee=lessee,
                                  worker=task.lease_owner, details=failure.get("details"))
        assert task.seq is not None
        try:
            t = decide.fail_activity_attempt(
                execution.core_state(), seq=task.seq, attempt=task.attempt,
                options=task.options, failure=failure, worker=task.lease_owner or None,
                now=timezone.now())
        except decide.Rejected as exc:
            raise rejected(exc) from None
        return write_activity_attempt(execution, task, t, lessee=lessee)


def write_activity_attempt(execution: Execution, task: Task, t: decide.Transition, *,
                           lessee: Lessee | None = None) -> Outcome | None:
    """Write the outcome of a failed attempt: None when it is retried (no event)."""
    outcome = write_transition(execution, t, lessee=lessee, task=task)
    return outcome if t.events else None


def activity_task_heartbeat(*, token: str, details: Any,
                            worker_id: str | None = None) -> bool:
    """Record a heartbeat; push the heartbeat deadline out. Returns whether the activity has
    been asked to cancel."""
    with atomic():
        _, task = check_lease(token, kind=TaskKind.ACTIVITY, worker_id=worker_id)
        now = timezone.now()
        task.heartbeat_details = details
        task.last_heartbeat_at = now
        tasks.save_heartbeat(task)
        if task.options.get("heartbeat_ms"):
            deadline = retry.attempt_deadline(task.options, leased_at=task.leased_at,
                                              last_heartbeat=now)
            timers.reschedule_attempt(task.execution_id, task.seq, deadline)
        return task.cancel_requested
