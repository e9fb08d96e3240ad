"""The executions and their histories: the one module that writes those two tables.

A run's row is locked first by every transition (``lock``), then its events are appended
(``append``, one statement) and its snapshot columns saved (``save``, one statement). The
statements every step runs are written out by hand (``schedproject.sql``); the rest use the
ORM. Reads of pages of history for workers live here too, beside the writes they follow.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection
from django.db.models import QuerySet

from schedproject import sql
from workflows.core.events import Event
from workflows.core.state import Status
from workflows.models import Execution, HistoryEvent, RequestRecord

__all__ = [
    "Execution", "append", "create", "get_many", "history", "lock",
    "lock_many_skip_locked", "open_run", "record_request", "request_record", "run", "runs",
    "save", "started_attributes",
]


def lock(execution_id: int) -> Execution:
    """The execution row, locked for the rest of the transaction. Raises
    ``Execution.DoesNotExist``. Callers lock it before any task or timer row."""
    rows = list(Execution.objects.raw(
        f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
        f"WHERE id = %s{sql.for_update()}", [execution_id]))
    if not rows:
        raise Execution.DoesNotExist(execution_id)
    return rows[0]


def lock_many_skip_locked(ids: Iterable[int]) -> dict[int, Execution]:
    """The executions of ``ids`` no other transaction holds, locked."""
    return {e.pk: e for e in Execution.objects.select_for_update(skip_locked=True)
            .filter(pk__in=list(ids))}


def get_many(ids: Iterable[int]) -> dict[int, Execution]:
    return Execution.objects.in_bulk(set(ids))


def open_run(workflow_id: str) -> Execution | None:
    """The run of ``workflow_id`` that is open (at most one is), or None."""
    rows = list(Execution.objects.raw(
        f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
        "WHERE workflow_id = %s AND status = %s ORDER BY id LIMIT 1",
        [workflow_id, Status.RUNNING.value]))
    return rows[0] if rows else None


def runs(workflow_id: str) -> QuerySet[Execution]:
    return Execution.objects.filter(workflow_id=workflow_id)


def run(workflow_id: str, run_id: uuid.UUID | None = None) -> Execution | None:
    """The run ``run_id`` of ``workflow_id``, or (``run_id`` None) its latest run: the one
    created last. Every request about one workflow starts here, so it is written out."""
    if run_id is None:
        rows = list(Execution.objects.raw(
            f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
            "WHERE workflow_id = %s ORDER BY created_at DESC, id DESC LIMIT 1", [workflow_id]))
    else:
        rows = list(Execution.objects.raw(
            f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
            "WHERE workflow_id = %s AND run_id = %s LIMIT 1",
            [workflow_id, _run_id_param(run_id)]))
    return rows[0] if rows else None


def _run_id_param(run_id: uuid.UUID) -> Any:
    """``run_id`` as the UUID column stores it (``char(32)`` hex on SQLite, ``uuid`` on
    PostgreSQL)."""
    return Execution._meta.get_field("run_id").get_db_prep_value(run_id, connection)


def create(**fields: Any) -> Execution:
    """A new execution row (its history and snapshot follow in the same transaction). One
    hand-written ``INSERT``: ``Execution`` has no ``auto_now`` fields and no signal
    receivers."""
    execution = Execution(**fields)
    sql.insert_one(execution)
    return execution


def append(execution: Execution, events: Sequence[Event]) -> None:
    """Append ``events`` to the run's history, in one statement."""
    sql.insert([HistoryEvent(execution=execution, event_id=e.event_id,
                             event_type=e.event_type.value, timestamp=e.timestamp,
                             attributes=e.attributes) for e in events])


def save(execution: Execution, fields: Sequence[str]) -> None:
    """Save these columns of the (locked) execution, in one statement."""
    sql.update(execution, fields)


def started_attributes(execution: Execution) -> dict[str, Any]:
    """The attributes of the run's WorkflowExecutionStarted."""
    attributes: dict[str, Any] = HistoryEvent.objects.get(execution=execution,
                                                          event_id=1).attributes
    return attributes


def history(execution_id: int, first: int, before: int) -> list[dict[str, Any]]:
    """The wire form of events ``first`` <= event_id < ``before`` of a run."""
    rows = sql.fetch(f"SELECT event_id, event_type, timestamp, attributes "
                     f"FROM {sql.table(HistoryEvent)} WHERE execution_id = %s "
                     "AND event_id >= %s AND event_id < %s ORDER BY event_id",
                     [execution_id, first, before])
    return [{"event_id": event_id, "event_type": event_type,
             "timestamp": _timestamp(ts).isoformat(),
             "attributes": json.loads(attributes) if isinstance(attributes, str | bytes)
             else attributes}
            for event_id, event_type, ts, attributes in rows]


def _timestamp(value: datetime | str) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive UTC text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def request_record(request_id: str) -> tuple[str, Execution] | None:
    """(kind, run) of the request that wrote under ``request_id``, if one did."""
    row = RequestRecord.objects.select_related("execution").filter(
        request_id=request_id).first()
    return None if row is None else (row.kind, row.execution)


def record_request(request_id: str, *, kind: str, execution: Execution, now: datetime) -> None:
    """Remember that ``request_id`` wrote to ``execution``: in the transaction of its write
    (a second one with the same id fails on the unique index)."""
    RequestRecord.objects.create(request_id=request_id, kind=kind, execution=execution,
                                 created_at=now)
