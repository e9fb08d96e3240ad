"""Generic hand-written SQL helpers for the stores' hot statements.

A transition runs about ten statements. Built through the ORM's query compiler each costs
0.3 to 0.8 ms of Python before the database sees it, more than the database's own work, so
the few that run on every step of every workflow are written out by the stores. These
helpers keep that honest: values still go through each field's own ``get_db_prep_save``, so
JSON, datetimes and time zones are stored exactly as the ORM would store them, on SQLite and
PostgreSQL alike.

Writes whose outcome nobody reads (``insert``, ``update``, ``write``) made inside
``deferring()`` go to PostgreSQL together: they are held, in order, and sent as one
multi-statement round trip (Django's psycopg cursors bind parameters on the client) just
before the next statement of any kind runs on the connection (a read, a lock, a savepoint:
``connection.execute_wrapper``), or when the block ends. So a read sees every write made
before it, and the statements run in the order they were made; only a failing write's
exception surfaces later, at that flush, still inside the transaction. A transition's
events, task rows and snapshot cost one round trip instead of four. On SQLite, which has no
round trips to save, every write runs at once.

On PostgreSQL these helpers run their statements on a cursor of their own over Django's
connection (``_cursor``): it binds parameters on the server, so psycopg does not quote each
value into the text in Python, and the server does not parse and plan a new text each time:
a statement is prepared on each connection the first time it runs there (the settings'
``prepare_threshold`` lets psycopg prepare; None turns it off, for a pooler that cannot keep
prepared statements), and every later run sends only its values. The helpers' statements are
a few dozen shapes; psycopg keeps the last ``prepared_max`` of them per connection. The held
writes go as one pipeline (psycopg's pipeline mode: every statement sent, one round trip for
all). Errors are Django's (``wrap_database_errors``), as from Django's own cursors. While
Django records the statements run (``DEBUG``, or a test's ``CaptureQueriesContext``), they go
through Django's cursors instead, so the record is whole.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import cache, lru_cache
from typing import Any, TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, connection, connections, models
from django.db.backends.base.base import BaseDatabaseWrapper

M = TypeVar("M", bound=models.Model)


_local = threading.local()  # .held: the writes held by this thread's ``deferring`` block


@contextmanager
def deferring() -> Iterator[None]:
    """Hold this thread's writes and send them together (see the module's docstring). The
    writes held are sent when the block ends normally; on an exception they are dropped (the
    transaction is rolled back anyway). Nested blocks join the outer one."""
    if connection.vendor != "postgresql" or getattr(_local, "held", None) is not None:
        yield
        return
    held: list[tuple[str, Sequence[Any]]] = []

    def before_any_statement(execute: Callable[..., Any], sql: str, params: Any, many: bool,
                             context: dict[str, Any]) -> Any:
        if held:
            _send(held)
        return execute(sql, params, many, context)

    _local.held = held
    try:
        with connection.execute_wrapper(before_any_statement):
            yield
            if held:
                _send(held)
    finally:
        _local.held = None


def _send(held: list[tuple[str, Sequence[Any]]]) -> None:
    statements = list(held)
    held.clear()  # first: the send itself passes through the wrapper
    if _bound_on_server():
        with _cursor() as cursor:
            if len(statements) == 1:
                cursor.execute(*statements[0], prepare=True)
                return
            with cursor.connection.pipeline():
                for statement, params in statements:
                    cursor.execute(statement, params, prepare=True)
        return
    params = [p for _, ps in statements for p in ps]
    with connection.cursor() as cursor:
        cursor.execute("; ".join(statement for statement, _ in statements), params)


def _run(cursor: Any, statement: str, params: Sequence[Any]) -> None:
    if isinstance(cursor, psycopg.Cursor):
        cursor.execute(statement, params, prepare=True)
    else:
        cursor.execute(statement, params)


def _db() -> BaseDatabaseWrapper:
    """This thread's connection. Each attribute read through ``django.db.connection`` looks
    the connection up again (a context-local read): the hot helpers read it once."""
    return connections[DEFAULT_DB_ALIAS]


def _bound_on_server(db: BaseDatabaseWrapper | None = None) -> bool:
    """Whether ``_cursor`` is a cursor of the helpers' own (see the module's docstring)."""
    db = db or _db()
    return db.vendor == "postgresql" and not db.queries_logged


@contextmanager
def _cursor() -> Iterator[Any]:
    """A cursor for one of the helpers' statements: on PostgreSQL (unless Django records the
    statements) a psycopg cursor over Django's connection that binds on the server, its
    errors turned into Django's; else Django's cursor. Writes held by ``deferring`` are sent
    first, as Django's cursors do through the block's wrapper."""
    db = _db()
    if not _bound_on_server(db):
        with db.cursor() as cursor:
            yield cursor
        return
    held = getattr(_local, "held", None)
    if held:
        _send(held)
    db.validate_no_broken_transaction()
    raw = db.connection
    if raw is None or raw.closed:
        db.ensure_connection()
        raw = db.connection
    with db.wrap_database_errors, psycopg.Cursor(raw) as cursor:
        yield cursor


def write(statement: str, params: Sequence[Any]) -> None:
    """Run a statement whose outcome is not read (a DELETE, an UPDATE): held inside
    ``deferring``, else at once."""
    held: list[tuple[str, Sequence[Any]]] | None = getattr(_local, "held", None)
    if held is not None:
        held.append((statement, list(params)))
        return
    with _cursor() as cursor:
        _run(cursor, statement, params)


def for_update() -> str:
    """`` FOR UPDATE`` where the database has row locks (not SQLite, which locks it all)."""
    return " FOR UPDATE" if connection.features.has_select_for_update else ""


def for_no_key_update(*, skip_locked: bool = False) -> str:
    """`` FOR NO KEY UPDATE`` (and `` SKIP LOCKED``) where the database has it: the lock of a
    row whose key never changes. Unlike ``FOR UPDATE`` it lets another transaction insert a
    row referring to it (a foreign key check takes ``FOR KEY SHARE``) without waiting."""
    features = _db().features
    if not features.has_select_for_update:
        return ""
    if not features.has_select_for_no_key_update:
        return " FOR UPDATE" + (" SKIP LOCKED" if skip_locked else "")
    return " FOR NO KEY UPDATE" + (" SKIP LOCKED" if skip_locked else "")


def marks(count: int) -> str:
    """``%s, %s, ...``: the placeholders of an ``IN (...)`` list of ``count`` values."""
    return ", ".join(["%s"] * count)


def skip_locked() -> str:
    """`` SKIP LOCKED`` where the database has it (after a ``FOR UPDATE``)."""
    return " SKIP LOCKED" if connection.features.has_select_for_update_skip_locked else ""


def table(model: type[models.Model]) -> str:
    return str(model._meta.db_table)


@cache
def columns(model: type[models.Model]) -> str:
    """Every concrete column of ``model``, quoted, for a ``SELECT`` that builds instances."""
    return ", ".join(connection.ops.quote_name(str(f.column))
                     for f in model._meta.concrete_fields)


@cache
def _field(model: type[models.Model], name: str) -> models.Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, models.Field)
    return field


# Fields whose value of this exact type goes to the database as it is (their
# ``get_db_prep_save`` would hand it back unchanged): one check instead of a chain of calls.
_PLAIN: dict[type[models.Field[Any, Any]], type] = {
    models.CharField: str, models.TextField: str, models.IntegerField: int,
    models.BigIntegerField: int, models.SmallIntegerField: int,
    models.PositiveIntegerField: int, models.BooleanField: bool,
}


@cache
def _plain_type(field: models.Field[Any, Any]) -> type | None:
    return _PLAIN.get(type(field))


def _prep(field: models.Field[Any, Any], value: Any, db: BaseDatabaseWrapper) -> Any:
    plain = _plain_type(field)
    if plain is not None and (value is None or type(value) is plain
                              or (plain is str and isinstance(value, str))):  # StrEnum too
        return value
    return field.get_db_prep_save(value, db)


@cache
def _update_statement(model: type[models.Model], fields: tuple[str, ...]) -> tuple[
        str, tuple[models.Field[Any, Any], ...]]:
    concrete = tuple(_field(model, f) for f in fields)
    sets = ", ".join(f"{connection.ops.quote_name(str(f.column))} = %s" for f in concrete)
    return f"UPDATE {table(model)} SET {sets} WHERE id = %s", concrete


def update(obj: models.Model, fields: Sequence[str]) -> None:
    """``obj.save(update_fields=fields)`` without the ORM's query building."""
    statement, concrete = _update_statement(type(obj), tuple(fields))
    db = _db()
    params = [_prep(f, getattr(obj, f.attname), db) for f in concrete]
    params.append(obj.pk)
    write(statement, params)


@cache
def _insert_fields(model: type[models.Model]) -> tuple[models.Field[Any, Any], ...]:
    return tuple(f for f in model._meta.concrete_fields
                 if isinstance(f, models.Field) and not f.primary_key)


@lru_cache(maxsize=512)
def _insert_statement(model: type[models.Model], rows: int) -> str:
    fields = _insert_fields(model)
    names = ", ".join(connection.ops.quote_name(str(f.column)) for f in fields)
    row = "(" + ", ".join(["%s"] * len(fields)) + ")"
    return f"INSERT INTO {table(model)} ({names}) VALUES " + ", ".join([row] * rows)


def insert(objs: Sequence[models.Model]) -> None:
    """Insert rows of one model in one statement (``bulk_create`` without returning ids)."""
    if not objs:
        return
    model = type(objs[0])
    fields = _insert_fields(model)
    db = _db()
    params = [_prep(f, getattr(obj, f.attname), db) for obj in objs for f in fields]
    write(_insert_statement(model, len(objs)), params)


def insert_one(obj: models.Model) -> None:
    """``obj.save()`` of a new row (``Model.objects.create``) without the ORM's query building:
    one ``INSERT``, and ``obj.pk`` set from it. No ``pre_save``/``post_save`` signals are sent
    and no field's ``pre_save`` runs, so it is only for models with no ``auto_now`` fields and
    no signal receivers (the caller says so)."""
    model = type(obj)
    fields = _insert_fields(model)
    db = _db()
    params = [_prep(f, getattr(obj, f.attname), db) for f in fields]
    statement = _insert_statement(model, 1)
    with _cursor() as cursor:
        if db.features.can_return_columns_from_insert:
            _run(cursor, statement + " RETURNING id", params)
            obj.pk = cursor.fetchone()[0]
        else:
            cursor.execute(statement, params)
            obj.pk = cursor.lastrowid
    obj._state.adding = False
    obj._state.db = db.alias


@cache
def qualified_columns(model: type[models.Model], alias: str) -> str:
    """``columns(model)`` qualified by the table's ``alias`` in a join."""
    return ", ".join(f"{alias}.{connection.ops.quote_name(str(f.column))}"
                     for f in model._meta.concrete_fields)


def width(model: type[models.Model]) -> int:
    """How many values a row of ``columns(model)`` has."""
    return len(model._meta.concrete_fields)


def instance(model: type[M], values: Sequence[Any]) -> M:
    """The instance of a row read as ``columns(model)`` (e.g. one side of a join), with each
    column converted from the database as the ORM's own reads convert it."""
    db = _db()
    converted = list(values)
    for i, field, converters in _converters(model, db.vendor):
        value = converted[i]
        for convert in converters:
            value = convert(value, field, db)
        converted[i] = value
    return model.from_db(db.alias, _attnames(model), converted)


@cache
def _attnames(model: type[models.Model]) -> tuple[str, ...]:
    return tuple(f.attname for f in model._meta.concrete_fields)


@cache
def _converters(model: type[models.Model], vendor: str) -> tuple[
        tuple[int, Any, tuple[Any, ...]], ...]:
    out = []
    for i, field in enumerate(model._meta.concrete_fields):
        column = field.get_col(model._meta.db_table)
        converters = (*connection.ops.get_db_converters(column),
                      *column.get_db_converters(connection))
        if converters:
            out.append((i, column, converters))
    return tuple(out)


def objects(model: type[M], sql: str, params: Sequence[Any]) -> list[M]:
    """The instances of the rows a ``SELECT {columns(model)} ...`` reads (``Model.objects.raw``
    without its per-query setup)."""
    return [instance(model, row) for row in fetch(sql, params)]


def execute(sql: str, params: Sequence[Any]) -> int:
    """Run one statement; how many rows it touched."""
    with _cursor() as cursor:
        _run(cursor, sql, params)
        return int(cursor.rowcount)


def fetch(sql: str, params: Sequence[Any]) -> list[tuple[Any, ...]]:
    with _cursor() as cursor:
        _run(cursor, sql, params)
        return list(cursor.fetchall())
