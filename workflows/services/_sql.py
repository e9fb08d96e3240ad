"""Hand-written SQL for the statements every transition runs.

A transition runs about ten statements. Built through the ORM's query compiler each costs
0.3 to 0.8 ms of Python before the database sees it, more than the database's own work, so
the few that run on every step of every workflow are written out here once. Values still go
through each field's own ``get_db_prep_save``, so JSON, datetimes and time zones are stored
exactly as the ORM would store them, on SQLite and PostgreSQL alike. Everything else stays
in the ORM.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import cache
from typing import Any

from django.db import connection, models

from dispatch.models import Task
from timers.models import Timer
from workflows.models import Execution, HistoryEvent


def _for_update() -> str:
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


@cache
def _columns(model: type[models.Model]) -> str:
    return ", ".join(connection.ops.quote_name(str(f.column))
                     for f in model._meta.concrete_fields)


def lock_execution(execution_id: int) -> Execution:
    """The execution row, locked for the rest of the transaction."""
    sql = (f"SELECT {_columns(Execution)} FROM {Execution._meta.db_table} "
           f"WHERE id = %s{_for_update()}")
    rows = list(Execution.objects.raw(sql, [execution_id]))
    if not rows:
        raise Execution.DoesNotExist(execution_id)
    return rows[0]


def lock_leased_task(token: str) -> Task | None:
    """The task leased under ``token``, locked. Lock its execution first."""
    sql = (f"SELECT {_columns(Task)} FROM {Task._meta.db_table} "
           f"WHERE token = %s AND state = 'leased'{_for_update()}")
    rows = list(Task.objects.raw(sql, [token]))
    return rows[0] if rows else None


@cache
def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


def update(obj: models.Model, fields: Sequence[str]) -> None:
    """``obj.save(update_fields=fields)`` without the ORM's query building."""
    concrete = [_field(type(obj), f) for f in fields]
    sets = ", ".join(f"{connection.ops.quote_name(str(f.column))} = %s" for f in concrete)
    params = [f.get_db_prep_save(getattr(obj, f.attname), connection) for f in concrete]
    with connection.cursor() as cursor:
        cursor.execute(f"UPDATE {obj._meta.db_table} SET {sets} WHERE id = %s", [*params, obj.pk])


@cache
def _insert_fields(model: type[models.Model]) -> tuple[models.Field[Any, Any], ...]:
    return tuple(f for f in model._meta.concrete_fields
                 if isinstance(f, models.Field) and not f.primary_key)


def insert(objs: Sequence[models.Model]) -> None:
    """Insert rows of one model in one statement (``bulk_create`` without returning ids)."""
    if not objs:
        return
    model = type(objs[0])
    fields = _insert_fields(model)
    columns = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    params = [f.get_db_prep_save(getattr(obj, f.attname), connection)
              for obj in objs for f in fields]
    with connection.cursor() as cursor:
        cursor.execute(f"INSERT INTO {model._meta.db_table} ({columns}) VALUES "
                       + ", ".join([row] * len(objs)), params)


def history(execution_id: int, first: int, before: int) -> list[dict[str, Any]]:
    """The wire form of events ``first`` <= event_id < ``before`` of a run."""
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT event_id, event_type, timestamp, attributes "
                       f"FROM {HistoryEvent._meta.db_table} WHERE execution_id = %s "
                       "AND event_id >= %s AND event_id < %s ORDER BY event_id",
                       [execution_id, first, before])
        rows = cursor.fetchall()
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


def leased_activity_tokens(execution_id: int) -> list[tuple[str, str]]:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT lease_owner, token FROM {Task._meta.db_table} "
                       "WHERE execution_id = %s AND kind = 'activity' AND state = 'leased'",
                       [execution_id])
        return [(str(owner), str(token)) for owner, token in cursor.fetchall()]


def delete_run_rows(execution_id: int) -> None:
    """Every task and timer row of a run (it has closed)."""
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Task._meta.db_table} WHERE execution_id = %s",
                       [execution_id])
        cursor.execute(f"DELETE FROM {Timer._meta.db_table} WHERE execution_id = %s",
                       [execution_id])


def delete_tasks(execution_id: int, kind: str, scheduled_event_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Task._meta.db_table} WHERE execution_id = %s "
                       "AND kind = %s AND scheduled_event_id = %s",
                       [execution_id, kind, scheduled_event_id])


def delete_timers(execution_id: int, kinds: Sequence[str], seq: int) -> None:
    marks = ", ".join(["%s"] * len(kinds))
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Timer._meta.db_table} WHERE execution_id = %s "
                       f"AND kind IN ({marks}) AND seq = %s", [execution_id, *kinds, seq])
