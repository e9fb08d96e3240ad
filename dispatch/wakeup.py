"""Wake-ups for the singleton loops, sent when a transaction that gives them work commits.

The dispatcher and the timer manager sleep until they have work. A transition that creates
a ready task or a timer calls ``on_commit(DISPATCH)`` / ``on_commit(TIMERS)``: once the
transaction commits, loops in this process are woken directly. On PostgreSQL a
``pg_notify`` is also issued inside the transaction, which Postgres delivers on commit only,
to the leader wherever it runs (it LISTENs on its dedicated connection) — unless the leader
is in this process, where the direct wake-up is enough.

Process state: the registered waiters (each loop registers its event while it runs and
unregisters it on the way out) and ``local_leaders``, the loops led in this process (written
by ``dispatch.leader`` as it takes and gives up a lead). Both are guarded for use from any
thread: transactions commit in worker threads, the loops run on the server's event loop.
"""

from __future__ import annotations

import asyncio
import threading

from django.db import connection, transaction

from schedproject import sql

DISPATCH = "dispatch"  # every dispatch shard's loop
TIMERS = "timers"
PG_CHANNEL = "sched_wake"

_lock = threading.Lock()
_waiters: dict[str, list[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}
# Names of the loops whose leader runs in this process.
local_leaders: set[str] = set()


def register(name: str, event: asyncio.Event, loop: asyncio.AbstractEventLoop) -> None:
    with _lock:
        _waiters.setdefault(name, []).append((loop, event))


def unregister(name: str, event: asyncio.Event) -> None:
    with _lock:
        _waiters[name] = [(lp, ev) for lp, ev in _waiters.get(name, []) if ev is not event]


def wake(name: str) -> None:
    """Wake this process's loops called ``name`` (from any thread)."""
    with _lock:
        waiters = list(_waiters.get(name, ()))
    for loop, event in waiters:
        if not loop.is_closed():
            loop.call_soon_threadsafe(event.set)


def shard_name(index: int, shards: int) -> str:
    """The wake-up name of dispatch shard ``index`` of ``shards`` (``DISPATCH`` when there is
    one shard). A shard's loop also wakes on ``DISPATCH`` (a worker has room again)."""
    return DISPATCH if shards <= 1 else f"{DISPATCH}:{index}"


def dispatch_shard(execution_id: int, shards: int) -> str:
    """The wake-up name of the dispatch shard of run ``execution_id``: a ready task of that
    run wakes only that shard's loop."""
    return shard_name(execution_id % max(shards, 1), shards)


def on_commit(name: str) -> None:
    """Wake the loop ``name`` once the current transaction commits."""
    transaction.on_commit(lambda: wake(name))
    if connection.vendor == "postgresql" and name not in local_leaders:
        # Nothing reads its result: inside a transition it goes with the held writes.
        sql.write("SELECT pg_notify(%s, %s)", [PG_CHANNEL, name])
