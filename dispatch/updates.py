"""Updates: a client's request that a running workflow change its state and answer.

An update goes through three steps, and writes only in the second:

1. Validation, over the query path (``dispatch.queries.ask`` with ``update_validation``): a
   worker serving the run calls the validator of the run's update handler against the
   run's state (its cached instance or a replay), like a query. A rejection (the validator
   raised) or an unknown name answers the caller at once, and nothing is written: the
   history only ever holds updates that were accepted.
2. Acceptance (``workflows.services.workflow_update_accept``): WorkflowExecutionUpdateAccepted
   is appended, which, like a signal, schedules a workflow task; the workflow runs the
   update's handler (an async one may run activities and sleep), and the worker's
   ``complete_update`` command records WorkflowExecutionUpdateCompleted with the handler's
   result or the failure that failed the update.
3. The wait (``workflows.selectors.update_outcome``, a long poll like ``GET .../result``'s,
   holding no database connection between reads) for that Completed event, for
   ``SCHED_UPDATE_TIMEOUT_SECONDS``.

``update_id`` makes it idempotent: an update id already completed answers its first outcome
without asking a worker, one already accepted only waits again. The validator may see a
state a little older than the one the handler runs on (a workflow task may complete between
the two); Temporal's speculative workflow tasks close that gap, at the cost of a workflow
task per rejected update, which is what step 1 avoids.

Rejected: running the validator inside a workflow task (a rejection would then write the
task's events), and a task row per update validation (as for queries: its caller waits).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any

from asgiref.sync import async_to_sync
from django.db import connection

from schedproject import config
from workflows import selectors, services
from workflows.core.events import EventType
from workflows.core.state import Status
from workflows.errors import Conflict, NotFound, SchedError
from workflows.store import update_events

from . import queries

ACCEPTED = EventType.WORKFLOW_EXECUTION_UPDATE_ACCEPTED.value
COMPLETED = EventType.WORKFLOW_EXECUTION_UPDATE_COMPLETED.value


class UpdateNotFound(NotFound):
    code = "update_not_found"


class UpdateRejected(SchedError):
    code = "update_rejected"
    http_status = 422


class UpdateFailed(SchedError):
    code = "update_failed"
    http_status = 422


class UpdateTimeout(SchedError):
    code = "update_timeout"
    http_status = 504


_VALIDATION_ERRORS = {UpdateNotFound.code: UpdateNotFound,
                      UpdateRejected.code: UpdateRejected}


@dataclass(frozen=True)
class Update:
    """One update as asked: the run (``run_id`` None: the latest), the handler, its args."""

    workflow_id: str
    run_id: str | None
    name: str
    args: list[Any]
    update_id: str


def new_update_id() -> str:
    return uuid.uuid4().hex


def update_wait_seconds() -> float:
    """The longest an update may wait: for a worker and its validation, then for the
    handler to complete."""
    cfg = config.get()
    return cfg.query_worker_wait_seconds + cfg.query_timeout_seconds + cfg.update_timeout_seconds


def execute_update(update: Update) -> Any:
    """The result of the update (its handler's return value); raises ``UpdateNotFound``,
    ``UpdateRejected`` (nothing written), ``UpdateFailed`` (``failure`` in its extras),
    ``Conflict`` ``run_closed``, ``NoWorker``, ``UpdateTimeout``, ``NotFound``. Runs in a
    request's thread; waits without holding a database connection."""
    target = queries.query_target(workflow_id=update.workflow_id, run_id=update.run_id)
    known = update_events(target.execution_id, update.update_id)
    if COMPLETED not in known:
        if ACCEPTED not in known:
            status = _status(target)
            if status != Status.RUNNING.value:
                raise _run_closed(update, target, status=status)
            _release_connection()  # the validation waits on a worker, not on the database
            _validate(target, update)
            services.workflow_update_accept(workflow_id=target.workflow_id,
                                            run_id=target.run_id, update_id=update.update_id,
                                            name=update.name, args=update.args)
        completed, status = selectors.update_outcome(
            execution_id=target.execution_id, update_id=update.update_id,
            wait=config.get().update_timeout_seconds)
        if completed is None:
            if status != Status.RUNNING.value:
                raise _run_closed(update, target, status=status)
            raise UpdateTimeout(
                f"the update {update.name!r} was accepted but its handler did not complete it "
                f"within {config.get().update_timeout_seconds:g} s "
                "(SCHED_UPDATE_TIMEOUT_SECONDS); ask again with the same update_id to wait on",
                update_id=update.update_id)
        known = {COMPLETED: completed}
    return _outcome(update, known[COMPLETED])


def _status(target: queries.Target) -> str:
    return selectors.execution_get(workflow_id=target.workflow_id, run_id=target.run_id).status


def _release_connection() -> None:
    """Give the thread's database connection back to the pool (PostgreSQL) before a wait."""
    if not connection.in_atomic_block and connection.vendor != "sqlite":
        connection.close()


def _validate(target: queries.Target, update: Update) -> None:
    try:
        async_to_sync(queries.ask)(target, name=update.name, args=update.args,
                                   update_validation=True, errors=_VALIDATION_ERRORS)
    except queries.QueryTimeout:
        raise UpdateTimeout(
            f"the worker did not validate the update {update.name!r} within "
            f"{config.get().query_timeout_seconds:g} s (SCHED_QUERY_TIMEOUT_SECONDS); nothing "
            "was recorded", update_id=update.update_id) from None


def _run_closed(update: Update, target: queries.Target, *, status: str) -> Conflict:
    return Conflict(f"workflow {update.workflow_id!r}: the run is {status}, without a "
                    f"completion of the update {update.name!r}", code="run_closed",
                    status=status, run_id=target.run_id)


def _outcome(update: Update, completed: dict[str, Any]) -> Any:
    failure = completed.get("failure")
    if failure is not None:
        raise UpdateFailed(
            f"the update {update.name!r} failed: {failure.get('type', 'Error')}: "
            f"{failure.get('message', '')}", failure=failure, update_id=update.update_id)
    return completed.get("result")
