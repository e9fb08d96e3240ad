"""Hand-written SQL for the statements every transition runs.

A transition runs about ten statements. Built through the ORM's query compiler each costs
0.3 to 0.8 ms of Python before the database sees it, more than the database's own work, so
the few that run on every step of every workflow are written out here once. Values still go
through each field's own ``get_db_prep_save``, so JSON, datetimes and time zones are stored
exactly as the ORM would store them, on SQLite and PostgreSQL alike. Everything else stays
in the ORM.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import cache
from typing import Any

from django.db import connection, models

from dispatch.models import Task
from timers.models import Timer
from workflows.models import Execution


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
