"""The one way sched opens a write transaction.

``atomic()`` is ``transaction.atomic(durable=True)``: a service's transaction is never nested
in another. On SQLite it also takes a process-wide lock first. SQLite admits one writer at a
time and makes the others poll with growing sleeps (its busy handler), which wastes most of
the time under load; queueing writers on a lock instead hands the database over at once.
There is one engine process per SQLite database, so a process lock is enough.

Process state: ``_sqlite_writer``, that lock, owned here and taken only by ``atomic()``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.db import connection, transaction

_sqlite_writer = threading.Lock()


@contextmanager
def atomic() -> Iterator[None]:
    if connection.vendor == "sqlite":
        with _sqlite_writer, transaction.atomic(durable=True):
            yield
    else:
        with transaction.atomic(durable=True):
            yield
