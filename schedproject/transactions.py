"""The one way sched opens a write transaction.

``atomic()`` is ``transaction.atomic(durable=True)``: a service's transaction is never nested
in another. On SQLite it also takes a process-wide lock first. SQLite admits one writer at a
time and makes the others poll with growing sleeps (its busy handler), which wastes most of
the time under load; queueing writers on a lock instead hands the database over at once.
There is one engine process per SQLite database, so a process lock is enough.

Group commit (``grouped``): several services' transactions run as one, so that completions
arriving together share one ``BEGIN`` and one ``COMMIT`` (``schedproject.dbthread`` groups
the worker sockets' units this way). Inside ``grouped()`` a service's ``atomic()`` joins the
group's transaction instead of opening its own; the group commits or rolls back as a whole,
and ``on_commit`` callbacks run once it has committed.

Process state: ``_sqlite_writer``, that lock, owned here and taken only by ``atomic()``;
``_group``, whether this thread is inside ``grouped()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

_sqlite_writer = threading.Lock()
_group = threading.local()


@contextmanager
def atomic() -> Iterator[None]:
    if getattr(_group, "active", False):
        yield  # one of a group's units: the group's transaction is this one's
        return
    if connection.vendor == "sqlite":
        with _sqlite_writer, transaction.atomic(durable=True):
            yield
    else:
        with transaction.atomic(durable=True):
            yield


@contextmanager
def grouped() -> Iterator[None]:
    """One transaction for the ``atomic()`` blocks run inside it (see the module's
    docstring). Only for units whose work is all inside their ``atomic()``."""
    with atomic():
        _group.active = True
        try:
            yield
        finally:
            _group.active = False
