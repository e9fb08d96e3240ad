"""Services that act on a run from outside: start, signal, cancel, terminate."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from schedproject.transactions import atomic
from workflows import store as executions
from workflows.core import decide
from workflows.core.effects import StartSuccessor
from workflows.errors import Conflict, NotFound
from workflows.models import Execution

from ._write import Lessee, Outcome, write_transition


def _open_run(workflow_id: str) -> Execution | None:
    return executions.open_run(workflow_id)


def _already_started(run: Execution) -> Conflict:
    return Conflict(f"workflow {run.workflow_id!r} already has an open run",
                    code="workflow_already_started", run_id=str(run.run_id))


def workflow_start(*, workflow_type: str, input: Any = None, workflow_id: str | None = None,
                   task_queue: str = "default", execution_timeout_ms: int | None = None,
                   parent: Execution | None = None,
                   trace_context: str | None = None) -> Execution:
    """Start a run. A ``workflow_id`` with an open run is refused (Conflict naming it).
    ``trace_context``: the caller's W3C traceparent (tracing on), kept with the run and sent
    with each of its tasks."""
    return workflow_start_handing_off(
        workflow_type=workflow_type, input=input, workflow_id=workflow_id,
        task_queue=task_queue, execution_timeout_ms=execution_timeout_ms, parent=parent,
        trace_context=trace_context, lessee=None).execution


def workflow_start_handing_off(*, workflow_type: str, input: Any = None,
                               workflow_id: str | None = None, task_queue: str = "default",
                               execution_timeout_ms: int | None = None,
                               parent: Execution | None = None,
                               trace_context: str | None = None,
                               request_id: str | None = None,
                               lessee: Lessee | None) -> Outcome:
    """``workflow_start``, handing the run's first workflow task to ``lessee`` in the same
    transaction if it serves the run's queue and type and has a free workflow slot. The
    outcome's ``deliveries`` (none without a lessee) are for the caller to send to the
    lessee once this has committed; otherwise the task is ready for the dispatcher.

    ``request_id``: the caller's id for this request. A start under an id already answered
    writes nothing and returns that first start's run (``events`` empty), even after it
    closed; the id of a signal, or of a start of another ``workflow_id``, is refused with
    ``request_id_reused``."""
    return _start(atomic, StartRequest(
        workflow_type=workflow_type, input=input, workflow_id=workflow_id,
        task_queue=task_queue, execution_timeout_ms=execution_timeout_ms,
        trace_context=trace_context, request_id=request_id), parent=parent, lessee=lessee)


def _start(block: Callable[[], AbstractContextManager[Any]], start: StartRequest, *,
           parent: Execution | None = None, lessee: Lessee | None = None) -> Outcome:
    """One start in ``block``, recorded under its ``request_id`` if it has one."""
    workflow_id = start.workflow_id or str(uuid.uuid4())
    request_id = start.request_id

    def create() -> Outcome:
        outcome = _create_run(
            workflow_id=workflow_id, workflow_type=start.workflow_type, input=start.input,
            task_queue=start.task_queue, execution_timeout_ms=start.execution_timeout_ms,
            parent=parent, trace_context=start.trace_context, lessee=lessee)
        if request_id:
            executions.record_request(request_id, kind=START, execution=outcome.execution,
                                      now=timezone.now())
        return outcome

    if not request_id:
        return _start_once(block, workflow_id, create)
    return _once(request_id, START, start.workflow_id,
                 lambda: _start_once(block, workflow_id, create, request_id=request_id,
                                     given_id=start.workflow_id))


def _start_once(block: Callable[[], AbstractContextManager[Any]], workflow_id: str,
                create: Callable[[], Outcome], *, request_id: str | None = None,
                given_id: str | None = None) -> Outcome:
    """Run ``create`` in ``block`` (the start's transaction, or a batch item's savepoint)
    unless ``workflow_id`` has an open run; either way a refusal is the Conflict naming it.
    A ``request_id`` already answered returns its first run instead."""
    try:
        with block():
            if request_id:
                first = _answered(request_id, START, given_id)
                if first is not None:
                    return Outcome(first, [])
            open_run = _open_run(workflow_id)
            if open_run is not None:
                raise _already_started(open_run)
            return create()
    except IntegrityError:
        # Another start of the same id committed between our check and our insert.
        open_run = _open_run(workflow_id)
        if open_run is None:
            raise
        raise _already_started(open_run) from None


# ---- idempotent requests: a retry with the same request_id gets the first answer ----------

START = "start"
SIGNAL = "signal"


def _answered(request_id: str, kind: str, workflow_id: str | None) -> Execution | None:
    """The run of the request already answered under ``request_id``, if any; a Conflict if
    that request was another kind, or named another workflow."""
    record = executions.request_record(request_id)
    if record is None:
        return None
    first_kind, run = record
    if first_kind != kind or (workflow_id is not None and run.workflow_id != workflow_id):
        raise Conflict(f"request_id {request_id!r} was used by another request",
                       code="request_id_reused")
    return run


def _once(request_id: str, kind: str, workflow_id: str | None,
          write: Callable[[], Outcome]) -> Outcome:
    """``write()``; if a request of the same id committed meanwhile (the unique index
    refuses ours), the first one's run."""
    try:
        return write()
    except (IntegrityError, Conflict) as exc:
        if isinstance(exc, Conflict) and exc.code != "workflow_already_started":
            raise
        first = _answered(request_id, kind, workflow_id)
        if first is None:
            raise
        return Outcome(first, [])


@dataclass(frozen=True)
class StartRequest:
    """One start of ``workflow_start_many``: the arguments of ``workflow_start``."""

    workflow_type: str
    input: Any = None
    workflow_id: str | None = None
    task_queue: str = "default"
    execution_timeout_ms: int | None = None
    trace_context: str | None = None
    request_id: str | None = None


def workflow_start_many(*, starts: Sequence[StartRequest]) -> list[Execution | Conflict]:
    """Start many runs in one transaction, in order, each in its own savepoint: a start that
    is refused (a ``workflow_id`` with an open run, this batch's own runs included) is
    answered with its Conflict, and the others start all the same. One answer per start."""
    with atomic():
        return [_start_in_savepoint(start) for start in starts]


def _start_in_savepoint(start: StartRequest) -> Execution | Conflict:
    try:  # in a savepoint: a refused start undoes only itself
        return _start(transaction.atomic, start).execution
    except Conflict as refused:
        return refused


def _create_run(*, workflow_id: str, workflow_type: str, input: Any, task_queue: str,
                execution_timeout_ms: int | None, parent: Execution | None,
                continued_from: Execution | None = None,
                run_id: uuid.UUID | None = None,
                trace_context: str | None = None,
                lessee: Lessee | None = None) -> Outcome:
    now = timezone.now()
    t = decide.start(
        workflow_type=workflow_type, task_queue=task_queue, input=input, now=now,
        execution_timeout_ms=execution_timeout_ms,
        parent=None if parent is None else {"workflow_id": parent.workflow_id,
                                            "run_id": str(parent.run_id)},
        continued_from_run_id=None if continued_from is None else str(continued_from.run_id),
    )
    execution = executions.create(
        workflow_id=workflow_id, workflow_type=workflow_type, task_queue=task_queue,
        input=input, created_at=now, parent=parent, state={}, run_id=run_id or uuid.uuid4(),
        search_attributes={"traceparent": trace_context} if trace_context else {},
    )
    return write_transition(execution, t, lessee=lessee)


def start_successor(execution: Execution, successor: StartSuccessor) -> Execution:
    """Start the run ``execution`` continued as (after the closed run is saved, so the
    one-open-run constraint holds). In the caller's transaction."""
    return _create_run(workflow_id=execution.workflow_id, workflow_type=successor.workflow_type,
                       input=successor.input, task_queue=successor.task_queue,
                       execution_timeout_ms=successor.execution_timeout_ms,
                       parent=execution.parent, continued_from=execution,
                       run_id=uuid.UUID(successor.run_id)).execution


def get_run(workflow_id: str, run_id: str | None = None) -> Execution:
    """The run ``run_id`` of ``workflow_id``, or its latest run."""
    if run_id is not None:
        try:
            run = executions.run(workflow_id, uuid.UUID(run_id))
        except ValueError:
            run = None
    else:
        run = executions.run(workflow_id)
    if run is None:
        raise NotFound(f"no workflow {workflow_id!r}" + (f" run {run_id!r}" if run_id else ""))
    return run


def _transition_run(workflow_id: str, run_id: str | None, step: Any, *,
                    request_id: str | None = None, kind: str = "") -> Execution:
    with atomic():
        run = executions.lock(get_run(workflow_id, run_id).pk)
        if request_id:  # checked under the run's lock: a concurrent retry waits for us
            first = _answered(request_id, kind, workflow_id)
            if first is not None:
                return first
        now = timezone.now()
        try:
            t = step(run.core_state(), now)
        except decide.Rejected as exc:
            raise Conflict(f"workflow {workflow_id!r}: {exc.message}", code=exc.code,
                           status=run.status, run_id=str(run.run_id)) from None
        write_transition(run, t)
        if request_id:
            executions.record_request(request_id, kind=kind, execution=run, now=now)
        return run


def workflow_signal(*, workflow_id: str, name: str, input: Any = None,
                    run_id: str | None = None, request_id: str | None = None) -> Execution:
    """Signal the run. ``request_id``: the caller's id for this request; a signal under an
    id already answered writes nothing and returns the run the first one reached."""
    def signal() -> Outcome:
        return Outcome(_transition_run(
            workflow_id, run_id,
            lambda s, now: decide.signal(s, name=name, input=input, now=now),
            request_id=request_id, kind=SIGNAL), [])

    if not request_id:
        return signal().execution
    return _once(request_id, SIGNAL, workflow_id, signal).execution


def workflow_request_cancel(*, workflow_id: str, reason: str | None = None,
                            run_id: str | None = None) -> Execution:
    return _transition_run(workflow_id, run_id,
                           lambda s, now: decide.request_cancel(s, reason=reason, now=now))


def workflow_terminate(*, workflow_id: str, reason: str | None = None,
                       run_id: str | None = None) -> Execution:
    return _transition_run(workflow_id, run_id,
                           lambda s, now: decide.terminate(s, reason=reason, now=now))
