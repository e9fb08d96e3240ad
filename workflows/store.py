"""The executions and their histories: the one module that writes those two tables.

A run's row is locked first by every transition (``lock``), then its events are appended
(``append``, one statement) and its snapshot columns saved (``save``, one statement). The
statements every step runs are written out by hand (``schedproject.sql``); the rest use the
ORM. Reads of pages of history for workers live here too, beside the writes they follow.

Process state: the last events this process appended to each of the runs it served lately
(``_recent``, at most ``RECENT_RUNS`` runs and ``RECENT_EVENTS`` events each, kept once their
transaction has committed, under ``_recent_lock``). A sticky worker's next workflow task
carries the events since its last one, which this process has most often just written: they
are read from there when it holds the whole range, contiguous, and from the table otherwise
(an event, once committed, never changes, so the two agree).
"""

from __future__ import annotations

import json
import threading
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

from django.db import connection, transaction
from django.db.models import QuerySet

from schedproject import sql
from workflows.core.events import Event, EventType
from workflows.core.state import Status
from workflows.models import Execution, HistoryEvent, RequestRecord

__all__ = [
    "Execution", "append", "create", "get_many", "history", "is_open", "lock", "lock_if_free",
    "lock_many_skip_locked", "open_run", "record_request", "request_and_open_run",
    "request_record", "run", "runs", "save", "started_attributes", "update_events",
]


def lock(execution_id: int) -> Execution:
    """The execution row, locked for the rest of the transaction. Raises
    ``Execution.DoesNotExist``. Callers lock it before any task or timer row.

    ``FOR NO KEY UPDATE``: a parent's transaction inserts timer rows on its child's row (see
    ``workflows.core.effects.ActOnChild``) while the child may be locked by a transition of
    its own; the insert's foreign key check must not wait for that lock."""
    rows = sql.objects(
        Execution, f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
        f"WHERE id = %s{sql.for_no_key_update()}", [execution_id])
    if not rows:
        raise Execution.DoesNotExist(execution_id)
    return rows[0]


def lock_if_free(execution_id: int) -> Execution | None:
    """The execution row, locked, unless another transaction holds it (or it is gone): None
    then, at once. For a lock taken while holding another run's (a child's close telling
    its parent), which must never wait: two runs locked in turn by two transactions could
    wait for each other."""
    rows = sql.objects(
        Execution, f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
        f"WHERE id = %s{sql.for_no_key_update(skip_locked=True)}", [execution_id])
    return rows[0] if rows else None


def lock_many_skip_locked(ids: Iterable[int]) -> dict[int, Execution]:
    """The executions of ``ids`` no other transaction holds, locked."""
    return _by_id(ids, sql.for_no_key_update(skip_locked=True))


def get_many(ids: Iterable[int]) -> dict[int, Execution]:
    return _by_id(ids, "")


def _by_id(ids: Iterable[int], lock: str) -> dict[int, Execution]:
    """The executions of ``ids`` by id, read with ``lock`` (a ``FOR ...`` clause, or none)."""
    wanted = sorted(set(ids))
    if not wanted:
        return {}
    return {e.pk: e for e in sql.objects(
        Execution, f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
        f"WHERE id IN ({sql.marks(len(wanted))}){lock}", wanted)}


def open_run(workflow_id: str) -> Execution | None:
    """The run of ``workflow_id`` that is open (at most one is), or None."""
    rows = sql.objects(
        Execution, f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
        "WHERE workflow_id = %s AND status = %s ORDER BY id LIMIT 1",
        [workflow_id, Status.RUNNING.value])
    return rows[0] if rows else None


def is_open(execution_id: int) -> bool:
    """Whether the run is open, as last committed (unlocked: a closed run never reopens)."""
    return Execution.objects.filter(pk=execution_id, status=Status.RUNNING.value).exists()


def runs(workflow_id: str) -> QuerySet[Execution]:
    return Execution.objects.filter(workflow_id=workflow_id)


def run(workflow_id: str, run_id: uuid.UUID | None = None) -> Execution | None:
    """The run ``run_id`` of ``workflow_id``, or (``run_id`` None) its latest run: the one
    created last. Every request about one workflow starts here, so it is written out."""
    if run_id is None:
        rows = sql.objects(
            Execution, f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
            "WHERE workflow_id = %s ORDER BY created_at DESC, id DESC LIMIT 1", [workflow_id])
    else:
        rows = sql.objects(
            Execution, f"SELECT {sql.columns(Execution)} FROM {sql.table(Execution)} "
            "WHERE workflow_id = %s AND run_id = %s LIMIT 1",
            [workflow_id, _run_id_param(run_id)])
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


RECENT_RUNS = 4096
RECENT_EVENTS = 64
_recent_lock = threading.Lock()
_recent: OrderedDict[uuid.UUID, list[dict[str, Any]]] = OrderedDict()  # by run id


def append(execution: Execution, events: Sequence[Event]) -> None:
    """Append ``events`` to the run's history, in one statement."""
    sql.insert([HistoryEvent(execution=execution, event_id=e.event_id,
                             event_type=e.event_type.value, timestamp=e.timestamp,
                             attributes=e.attributes) for e in events])
    if events and execution.sticky_worker:  # a worker caches the run: its next task needs them
        run_id = _run_key(execution)
        wire = [e.to_wire() for e in events]
        transaction.on_commit(lambda: _remember(run_id, wire))


def _run_key(execution: Execution) -> uuid.UUID:
    run_id = execution.run_id
    return run_id if isinstance(run_id, uuid.UUID) else uuid.UUID(str(run_id))


def _remember(run_id: uuid.UUID, wire: list[dict[str, Any]]) -> None:
    with _recent_lock:
        have = _recent.pop(run_id, None)
        if have and have[-1]["event_id"] + 1 == wire[0]["event_id"]:
            wire = have + wire
        _recent[run_id] = wire[-RECENT_EVENTS:]
        while len(_recent) > RECENT_RUNS:
            _recent.popitem(last=False)


def _recalled(run_id: uuid.UUID, first: int, before: int) -> list[dict[str, Any]] | None:
    with _recent_lock:
        have = _recent.get(run_id)
        if not have or have[0]["event_id"] > first or have[-1]["event_id"] < before - 1:
            return None
        _recent.move_to_end(run_id)
        start = first - have[0]["event_id"]
        return have[start:start + before - first]


def save(execution: Execution, fields: Sequence[str]) -> None:
    """Save these columns of the (locked) execution, in one statement."""
    sql.update(execution, fields)


def started_attributes(execution: Execution) -> dict[str, Any]:
    """The attributes of the run's WorkflowExecutionStarted."""
    attributes: dict[str, Any] = HistoryEvent.objects.get(execution=execution,
                                                          event_id=1).attributes
    return attributes


def history(execution: Execution, first: int, before: int) -> list[dict[str, Any]]:
    """The wire form of events ``first`` <= event_id < ``before`` of a run."""
    recalled = _recalled(_run_key(execution), first, before)
    if recalled is not None:
        return recalled
    execution_id = execution.pk
    rows = sql.fetch(f"SELECT event_id, event_type, timestamp, attributes "
                     f"FROM {sql.table(HistoryEvent)} WHERE execution_id = %s "
                     "AND event_id >= %s AND event_id < %s ORDER BY event_id",
                     [execution_id, first, before])
    return [{"event_id": event_id, "event_type": event_type,
             "timestamp": _timestamp(ts).isoformat(),
             "attributes": json.loads(attributes) if isinstance(attributes, str | bytes)
             else attributes}
            for event_id, event_type, ts, attributes in rows]


def event_time(execution: Execution, event_id: int) -> datetime | None:
    """When event ``event_id`` of the run was appended (None: no such event); from the
    events this process appended lately when it has them, else read."""
    events = history(execution, event_id, event_id + 1)
    return _timestamp(events[0]["timestamp"]) if events else None


def _timestamp(value: datetime | str) -> datetime:
    """A stored timestamp as an aware UTC datetime (SQLite hands back naive UTC text)."""
    if isinstance(value, str):
        value = datetime.fromisoformat(value)
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def request_record(request_id: str) -> tuple[str, Execution] | None:
    """(kind, run) of the request that wrote under ``request_id``, if one did. Every start
    and signal with a request id asks (the SDK gives each one), so it is written out."""
    rows = sql.fetch(
        f"SELECT {sql.qualified_columns(Execution, 'e')}, r.kind AS request_kind "
        f"FROM {sql.table(RequestRecord)} r JOIN {sql.table(Execution)} e "
        "ON e.id = r.execution_id WHERE r.request_id = %s", [request_id])
    if not rows:
        return None
    return str(rows[0][-1]), sql.instance(Execution, rows[0][:-1])


def request_and_open_run(request_id: str, workflow_id: str) -> tuple[
        tuple[str, Execution] | None, Execution | None]:
    """``request_record(request_id)`` and ``open_run(workflow_id)`` in one round trip: what a
    start with a request id reads before it writes."""
    columns = sql.qualified_columns(Execution, "e")
    rows = sql.fetch(
        f"SELECT {columns}, r.kind AS request_kind FROM {sql.table(RequestRecord)} r "
        f"JOIN {sql.table(Execution)} e ON e.id = r.execution_id WHERE r.request_id = %s "
        f"UNION ALL SELECT * FROM (SELECT {columns}, NULL AS request_kind "
        f"FROM {sql.table(Execution)} e WHERE e.workflow_id = %s AND e.status = %s "
        "ORDER BY e.id LIMIT 1) o", [request_id, workflow_id, Status.RUNNING.value])
    record: tuple[str, Execution] | None = None
    open_run: Execution | None = None
    for row in rows:
        kind, run = row[-1], sql.instance(Execution, row[:-1])
        if kind is None:
            open_run = run
        else:
            record = (str(kind), run)
    return record, open_run


def record_request(request_id: str, *, kind: str, execution: Execution, now: datetime) -> None:
    """Remember that ``request_id`` wrote to ``execution``: in the transaction of its write
    (a second one with the same id fails on the unique index: at once, or inside
    ``sql.deferring`` when the held writes are sent, before the commit either way)."""
    sql.insert([RequestRecord(request_id=request_id, kind=kind, execution=execution,
                              created_at=now)])


_UPDATE_EVENTS = (EventType.WORKFLOW_EXECUTION_UPDATE_ACCEPTED.value,
                  EventType.WORKFLOW_EXECUTION_UPDATE_COMPLETED.value)


def update_events(execution_id: int, update_id: str) -> dict[str, dict[str, Any]]:
    """The run's UpdateAccepted and UpdateCompleted events of ``update_id`` (at most one of
    each), as ``{event_type: attributes}``."""
    rows = (HistoryEvent.objects
            .filter(execution_id=execution_id, event_type__in=_UPDATE_EVENTS,
                    attributes__update_id=update_id)
            .values_list("event_type", "attributes"))
    return {event_type: attributes for event_type, attributes in rows}
