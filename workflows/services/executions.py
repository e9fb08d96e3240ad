"""Services that act on a run from outside: start, signal, cancel, terminate."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Collection, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone

from schedproject import sql
from schedproject.transactions import atomic
from workflows import store as executions
from workflows.core import commands as c
from workflows.core import decide
from workflows.core.effects import StartSuccessor
from workflows.core.state import Status
from workflows.errors import Conflict, InvalidInput, NotFound
from workflows.models import Execution

from ._write import Lessee, Outcome, write_transition


def _open_run(workflow_id: str) -> Execution | None:
    return executions.open_run(workflow_id)


def _already_started(run: Execution) -> Conflict:
    return Conflict(f"workflow {run.workflow_id!r} already has an open run",
                    code="workflow_already_started", run_id=str(run.run_id))


# What a start does when its ``workflow_id`` has an open run (``id_conflict_policy``).
FAIL = "fail"  # refuse it: 409 ``workflow_already_started``
USE_EXISTING = "use_existing"  # answer with the open run (signalled, for a signal-with-start)
ID_CONFLICT_POLICIES = (FAIL, USE_EXISTING)
# How many times a start goes round when a concurrent start or close changed the picture
# between its read and its write (a start that lost the race for the one-open-run index).
START_ATTEMPTS = 5


@dataclass(frozen=True)
class StartRequest:
    """One start: the arguments of ``workflow_start_handing_off`` (and of one item of
    ``workflow_start_many``)."""

    workflow_type: str
    input: Any = None
    workflow_id: str | None = None
    task_queue: str = "default"
    execution_timeout_ms: int | None = None
    trace_context: str | None = None
    request_id: str | None = None
    # None: ``fail``, or ``use_existing`` for a signal-with-start (``start_signal``).
    id_conflict_policy: str | None = None
    start_signal: str | None = None
    start_signal_input: Any = None

    def __post_init__(self) -> None:
        policy = self.id_conflict_policy
        if policy is not None and policy not in ID_CONFLICT_POLICIES:
            raise InvalidInput("id_conflict_policy must be fail or use_existing",
                               fields={"id_conflict_policy": ["unknown policy."]})
        if self.start_signal is not None and policy == FAIL:
            # A signal-with-start signals the open run: it cannot also refuse it.
            raise InvalidInput(
                "a signal-with-start (start_signal) signals an open run: its "
                "id_conflict_policy is use_existing, not fail",
                fields={"id_conflict_policy": ["fail cannot go with start_signal."]})

    @property
    def policy(self) -> str:
        if self.id_conflict_policy is not None:
            return self.id_conflict_policy
        return FAIL if self.start_signal is None else USE_EXISTING


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
                               id_conflict_policy: str | None = None,
                               start_signal: str | None = None,
                               start_signal_input: Any = None,
                               lessee: Lessee | None) -> Outcome:
    """Start a run, handing its first workflow task to ``lessee`` in the same transaction if
    it serves the run's queue and type and has a free workflow slot. The outcome's
    ``deliveries`` (none without a lessee) are for the caller to send to the lessee once
    this has committed; otherwise the task is ready for the dispatcher. ``started`` says
    whether a run was started (False: the answer is a run that was already open).

    ``id_conflict_policy``: what to do when ``workflow_id`` has an open run. ``"fail"`` (the
    default without ``start_signal``) refuses the start (Conflict
    ``workflow_already_started`` naming the run); ``"use_existing"`` answers with that run,
    unless it has another workflow type or task queue (Conflict ``workflow_type_mismatch``
    or ``task_queue_mismatch``, naming it and what it has).

    ``start_signal`` (signal-with-start; its policy is ``"use_existing"``, and ``"fail"`` is
    refused as ``InvalidInput``): signal the open run with ``start_signal_input``; with no
    open run, start one with the signal recorded right after its start, in the same
    transaction, so its first workflow task sees it. Two concurrent signal-with-starts of
    one id make one run with both signals.

    ``request_id``: the caller's id for this request. A start under an id already answered
    writes nothing and returns that first start's run (``events`` empty, ``started`` as the
    first answer said), even after it closed; the id of a signal, or of a start of another
    ``workflow_id``, is refused with ``request_id_reused``."""
    return _start(atomic, StartRequest(
        workflow_type=workflow_type, input=input, workflow_id=workflow_id,
        task_queue=task_queue, execution_timeout_ms=execution_timeout_ms,
        trace_context=trace_context, request_id=request_id,
        id_conflict_policy=id_conflict_policy, start_signal=start_signal,
        start_signal_input=start_signal_input), parent=parent, lessee=lessee)


class _Again(Exception):
    """What the start read changed before it could act on it: go round again."""


def _start(block: Callable[[], AbstractContextManager[Any]], start: StartRequest, *,
           parent: Execution | None = None, lessee: Lessee | None = None) -> Outcome:
    """One start in ``block`` (the start's transaction, or a batch item's savepoint),
    recorded under its ``request_id`` if it has one.

    Under concurrency the one-open-run index decides: a start that read no open run and
    then lost the race to insert one (``IntegrityError``: its block is rolled back) goes
    round again and finds the winner's run, which it refuses, uses or signals by its policy;
    likewise a run found open but closed before it was locked. A request id answered
    meanwhile by a retry of the same request is found on the next round too."""
    workflow_id = start.workflow_id or str(uuid.uuid4())
    for attempt in range(START_ATTEMPTS):
        try:
            # The writes nobody reads back (the run's history, snapshot and first task, the
            # request record) go to the database together at the block's end.
            with block(), sql.deferring():
                return _start_once(start, workflow_id, parent=parent, lessee=lessee)
        except (IntegrityError, _Again):
            if attempt == START_ATTEMPTS - 1:
                raise
    raise AssertionError("unreachable")


def _start_once(start: StartRequest, workflow_id: str, *, parent: Execution | None,
                lessee: Lessee | None) -> Outcome:
    """``_start``'s one round, in its block: the first answer of a request id already
    answered; else the open run's (refused, used or signalled); else a new run."""
    request_id = start.request_id
    if request_id:
        record, open_run = executions.request_and_open_run(request_id, workflow_id)
        first = _first_answer(record, request_id, START_KINDS, start.workflow_id)
        if first is not None:
            kind, run = first
            return Outcome(run, [], started=kind == START)
    else:
        open_run = _open_run(workflow_id)
    if open_run is not None:
        outcome = _use_existing(open_run, start)
        kind = START_EXISTING
    else:
        outcome = _create_run(
            workflow_id=workflow_id, workflow_type=start.workflow_type, input=start.input,
            task_queue=start.task_queue, execution_timeout_ms=start.execution_timeout_ms,
            parent=parent, trace_context=start.trace_context, lessee=lessee,
            start_signal=start.start_signal, start_signal_input=start.start_signal_input)
        kind = START
    if request_id:
        executions.record_request(request_id, kind=kind, execution=outcome.execution,
                                  now=timezone.now())
    return outcome


def _use_existing(open_run: Execution, start: StartRequest) -> Outcome:
    """The answer to ``start`` when its workflow id has ``open_run``: refused (``fail``, or
    a run of another type or queue), the run as it is, or the run signalled."""
    if start.policy != USE_EXISTING:
        raise _already_started(open_run)
    for field_name, code in (("workflow_type", "workflow_type_mismatch"),
                             ("task_queue", "task_queue_mismatch")):
        theirs, ours = getattr(open_run, field_name), getattr(start, field_name)
        if theirs != ours:
            raise Conflict(
                f"workflow {open_run.workflow_id!r} has an open run of {field_name} "
                f"{theirs!r}, not {ours!r}", code=code, run_id=str(open_run.run_id),
                **{field_name: theirs})
    if start.start_signal is None:
        return Outcome(open_run, [], started=False)
    run = executions.lock(open_run.pk)
    if run.status != Status.RUNNING.value:
        raise _Again  # it closed since we read it: the next round starts a new run
    t = decide.signal(run.core_state(), name=start.start_signal,
                      input=start.start_signal_input, now=timezone.now())
    outcome = write_transition(run, t)
    outcome.started = False
    return outcome


# ---- idempotent requests: a retry with the same request_id gets the first answer ----------

START = "start"  # a start that started its run
START_EXISTING = "start_existing"  # a start answered with a run already open
START_KINDS = frozenset({START, START_EXISTING})
SIGNAL = "signal"


def _answered(request_id: str, kinds: Collection[str],
              workflow_id: str | None) -> tuple[str, Execution] | None:
    """(kind, run) of the request already answered under ``request_id``, if any; a Conflict
    if that request was of another kind, or named another workflow."""
    return _first_answer(executions.request_record(request_id), request_id, kinds, workflow_id)


def _first_answer(record: tuple[str, Execution] | None, request_id: str,
                  kinds: Collection[str], workflow_id: str | None) -> tuple[str, Execution] | None:
    """``_answered`` of the request ``record`` read."""
    if record is None:
        return None
    first_kind, run = record
    if first_kind not in kinds or (workflow_id is not None and run.workflow_id != workflow_id):
        raise Conflict(f"request_id {request_id!r} was used by another request",
                       code="request_id_reused")
    return first_kind, run


def _once(request_id: str, kind: str, workflow_id: str | None,
          write: Callable[[], Outcome]) -> Outcome:
    """``write()``; if a request of the same id committed meanwhile (the unique index
    refuses ours), the first one's run."""
    try:
        return write()
    except IntegrityError:
        first = _answered(request_id, {kind}, workflow_id)
        if first is None:
            raise
        return Outcome(first[1], [])


def workflow_start_many(*, starts: Sequence[StartRequest]) -> list[Outcome | Conflict]:
    """Start many runs in one transaction, in order, each in its own savepoint: a start that
    is refused (a ``workflow_id`` with an open run, this batch's own runs included, under
    the ``fail`` policy) is answered with its Conflict, and the others start all the same.
    One answer per start: its outcome (``started``, as ``workflow_start_handing_off``'s)
    or its Conflict."""
    with atomic():
        return [_start_in_savepoint(start) for start in starts]


def _start_in_savepoint(start: StartRequest) -> Outcome | Conflict:
    try:  # in a savepoint: a refused start undoes only itself
        return _start(transaction.atomic, start)
    except Conflict as refused:
        return refused


def _create_run(*, workflow_id: str, workflow_type: str, input: Any, task_queue: str,
                execution_timeout_ms: int | None, parent: Execution | None,
                continued_from: Execution | None = None,
                run_id: uuid.UUID | None = None,
                trace_context: str | None = None,
                lessee: Lessee | None = None, start_signal: str | None = None,
                start_signal_input: Any = None, retry_policy: c.RetryPolicy | None = None,
                attempt: int = 1, first_workflow_task_backoff_ms: int | None = None
                ) -> Outcome:
    now = timezone.now()
    t = decide.start(
        workflow_type=workflow_type, task_queue=task_queue, input=input, now=now,
        execution_timeout_ms=execution_timeout_ms,
        parent=None if parent is None else {"workflow_id": parent.workflow_id,
                                            "run_id": str(parent.run_id)},
        continued_from_run_id=None if continued_from is None else str(continued_from.run_id),
        start_signal=start_signal, start_signal_input=start_signal_input,
        retry_policy=retry_policy, attempt=attempt,
        first_workflow_task_backoff_ms=first_workflow_task_backoff_ms,
    )
    execution = executions.create(
        workflow_id=workflow_id, workflow_type=workflow_type, task_queue=task_queue,
        input=input, created_at=now, parent=parent, state={}, run_id=run_id or uuid.uuid4(),
        search_attributes={"traceparent": trace_context} if trace_context else {},
    )
    return write_transition(execution, t, lessee=lessee)


def start_successor(execution: Execution, successor: StartSuccessor) -> Execution:
    """Start the run ``execution`` continued as, or its retry (after the closed run is
    saved, so the one-open-run constraint holds). In the caller's transaction."""
    return _create_run(workflow_id=execution.workflow_id, workflow_type=successor.workflow_type,
                       input=successor.input, task_queue=successor.task_queue,
                       execution_timeout_ms=successor.execution_timeout_ms,
                       parent=execution.parent,
                       continued_from=None if successor.retry_policy else execution,
                       run_id=uuid.UUID(successor.run_id),
                       retry_policy=(None if successor.retry_policy is None
                                     else c.RetryPolicy.from_dict(successor.retry_policy)),
                       attempt=successor.attempt,
                       first_workflow_task_backoff_ms=successor.first_workflow_task_backoff_ms
                       ).execution


def time_out_run(execution: Execution, now: datetime) -> Outcome:
    """The run's execution timeout expired (``execution`` locked): it times out, and if it
    was started with a retry policy that allows it, its retry starts."""
    started = executions.started_attributes(execution)
    retries = started.get("retry_policy") is not None
    t = decide.time_out_workflow(execution.core_state(), now=now,
                                 started=started if retries else None,
                                 successor_run_id=str(uuid.uuid4()) if retries else None)
    outcome = write_transition(execution, t)
    if outcome.successor is not None:
        start_successor(execution, outcome.successor)
    return outcome


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
    with atomic(), sql.deferring():  # the request record goes with the transition's writes
        run = executions.lock(get_run(workflow_id, run_id).pk)
        if request_id:  # checked under the run's lock: a concurrent retry waits for us
            first = _answered(request_id, {kind}, workflow_id)
            if first is not None:
                return first[1]
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
