"""Threads of sched's own for database work called from the event loop.

Channels' ``database_sync_to_async`` runs every caller's database work on one thread shared
by the whole process (asgiref's thread-sensitive executor), one call at a time. sched keeps
its hot paths off it:

- ``DbThread``: one thread for a loop (the dispatcher, the timer manager). A loop must not
  queue behind the sockets' traffic (a timer that fires late because a hundred completions
  were ahead of it is a late timer). Its connection is Django's usual one.
- ``DbPool``: a few threads shared by the callers of one edge (the worker sockets), so the
  transitions of independent runs proceed side by side; ``Lane`` runs one caller's units in
  the order submitted, one at a time, on whichever of the pool's threads is free.

Connections: every unit of work runs between two ``close_old_connections()``, as Django
expects of long-lived threads (a connection that failed, or outlived ``CONN_MAX_AGE``, is
closed and the next unit opens another). The sockets' threads each keep a connection of
their own, and one that has had no work for ``IDLE_SECONDS`` closes it. On PostgreSQL that
connection is opened outside Django's connection pool (same server, database and options,
``CONN_MAX_AGE`` 300 s): the pool is shared with the request threads, and under a burst of
REST calls a transition waited there for most of its time. On SQLite it is the usual one
(already kept for ``CONN_MAX_AGE``).

Group commit: a unit submitted with ``submit_grouped`` may share its transaction with others
(``schedproject.transactions.grouped``). A thread that takes such a unit from the queue also
takes the grouped units queued behind it (at most ``MAX_GROUP``), runs them in the order of
their keys (a run's id: every group locks runs in one order, so two groups never wait for
each other; units of one key keep the order they came in) in one transaction, and answers
them all once it has committed. When the load is light a group is one unit, as before; under
load, completions that arrive together cost one ``BEGIN`` and one ``COMMIT`` between them.
If a unit raises, the group rolls back and each of its units runs again alone, in a
transaction of its own, as it would have without the group: so a unit's outcome, error or
not, is the one it would have had alone. If the commit itself fails, every unit of the group
gets that error (the database went away: the caller treats it as it would its own).

A caller's coroutine may be canceled (its socket went away) while its unit runs: the unit
is not interrupted, it runs to its commit or its rollback, and a lane's next unit starts
only after it. So whatever a unit does must be safe to do for a caller that is gone (the
consumer's completions are fenced by the task's token). At interpreter exit the threads
finish the units already submitted, then stop.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextvars
import copy
import dataclasses
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
from django.db import DEFAULT_DB_ALIAS, close_old_connections, connections
from django.db.utils import load_backend

from schedproject.transactions import grouped

T = TypeVar("T")
IDLE_SECONDS = 2.0
OWN_CONN_MAX_AGE = 300
MAX_GROUP = 32

# The interpreter's hook that runs before it joins non-daemon threads (what
# concurrent.futures uses to finish its queued work at exit); without it, daemon threads.
_register_atexit: Callable[[Callable[[], None]], None] | None = getattr(
    threading, "_register_atexit", None)

# (future, context, fn, args, kwargs, group key: None for a unit that runs alone)
_Item = tuple["concurrent.futures.Future[Any]", contextvars.Context, Callable[..., Any],
              tuple[Any, ...], dict[str, Any], int | None]


def _unit(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


def _own_connection() -> None:
    """Give this thread a connection of its own, outside Django's PostgreSQL pool."""
    settings_dict = connections.settings[DEFAULT_DB_ALIAS]
    options = dict(settings_dict.get("OPTIONS") or {})
    if options.pop("pool", None) is None:
        return
    own = {**settings_dict, "OPTIONS": options, "CONN_MAX_AGE": OWN_CONN_MAX_AGE}
    backend = load_backend(own["ENGINE"])
    connections[DEFAULT_DB_ALIAS] = backend.DatabaseWrapper(own, DEFAULT_DB_ALIAS)


class DbPool:
    """``size`` threads for database work; they start when work first comes. With
    ``own_connections`` (the worker sockets' pool) each thread keeps a connection of its own
    as the module's docstring says; without (a loop's ``DbThread``), a thread takes its
    connection as any Django thread does (on PostgreSQL from the shared pool, for one unit)."""

    def __init__(self, name: str, size: int, *, own_connections: bool = True) -> None:
        self.name = name
        self.size = size
        self.own_connections = own_connections
        self._queue: queue.SimpleQueue[_Item | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopped = False

    def submit(self, fn: Callable[..., T], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[T]:
        """Run ``fn`` on one of the threads, in a copy of the caller's context (as asgiref's
        ``sync_to_async`` does: log and trace context carry over)."""
        return self.submit_in(contextvars.copy_context(), fn, args, kwargs)

    def submit_grouped(self, key: int, fn: Callable[..., T], /, *args: Any,
                       **kwargs: Any) -> concurrent.futures.Future[T]:
        """``submit``, for a unit whose work is all inside its ``atomic()``: it may run in one
        transaction with others (see the module's docstring); ``key`` orders a group's units
        (the id of the run it locks)."""
        return self.submit_in(contextvars.copy_context(), fn, args, kwargs, group=key)

    def submit_in(self, context: contextvars.Context, fn: Callable[..., T],
                  args: tuple[Any, ...], kwargs: dict[str, Any], *,
                  group: int | None = None) -> concurrent.futures.Future[T]:
        future: concurrent.futures.Future[T] = concurrent.futures.Future()
        with self._lock:
            if self._stopped:
                raise RuntimeError(f"the {self.name} database threads have stopped")
            if not self._threads:
                self._start()
            self._queue.put((future, context, fn, args, kwargs, group))
        return future

    def lane(self) -> Lane:
        return Lane(self)

    def stop(self) -> None:
        """Let the threads finish the units submitted, then end them."""
        with self._lock:
            self._stopped = True
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        for thread in threads:
            thread.join()

    def _start(self) -> None:
        for i in range(self.size):
            thread = threading.Thread(target=self._serve, name=f"sched-{self.name}_{i}",
                                      daemon=_register_atexit is None)
            thread.start()
            self._threads.append(thread)
        if _register_atexit is not None:
            _register_atexit(self.stop)

    def _serve(self) -> None:
        if self.own_connections:
            _own_connection()
        idle = IDLE_SECONDS if self.own_connections else None
        try:
            while True:
                try:
                    item = self._queue.get(timeout=idle)
                except queue.Empty:
                    connections.close_all()  # this thread's: no work for a while
                    continue
                if item is None:
                    return
                if item[5] is None:
                    _run_alone(item)
                    continue
                group, alone, stop = self._take_group(item)
                _run_group(group)
                for other in alone:
                    _run_alone(other)
                del item, group, alone
                if stop:
                    return
        finally:
            connections.close_all()

    def _take_group(self, first: _Item) -> tuple[list[_Item], list[_Item], bool]:
        """``first`` and the grouped units queued behind it; the others taken meanwhile, to
        run alone after it; whether the pool is stopping."""
        group: list[_Item] = [first]
        alone: list[_Item] = []
        while len(group) < MAX_GROUP:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                break
            if item is None:
                return group, alone, True
            (group if item[5] is not None else alone).append(item)
        return group, alone, False


def _run_alone(item: _Item) -> None:
    if item[0].set_running_or_notify_cancel():
        _settle_alone(item)


def _run_group(items: list[_Item]) -> None:
    """Run ``items`` in one transaction (see the module's docstring)."""
    live = [item for item in items if item[0].set_running_or_notify_cancel()]
    if len(live) <= 1:
        for item in live:
            _settle_alone(item)
        return
    live.sort(key=lambda item: item[5] or 0)  # stable: one key's units keep their order
    results: list[Any] = []
    in_unit = False
    close_old_connections()
    try:
        with grouped():
            for _future, context, fn, args, kwargs, _ in live:
                in_unit = True
                # Arguments the unit may change (a lessee's slots) are copies: if the group
                # fails, the unit runs again alone on the originals.
                results.append(context.run(fn, *args, **{k: _copy(v) for k, v in kwargs.items()}))
                if _spoiled():
                    # The unit caught a database error and went on: the group's COMMIT would
                    # end in a rollback of every unit's work. Each runs alone instead.
                    raise _Spoiled
                in_unit = False
    except BaseException as exc:
        if not in_unit:  # the commit failed: each unit's outcome is that
            for item in live:
                item[0].set_exception(exc)
            return
        for item in live:  # one unit failed: the group was rolled back; each alone
            _settle_alone(item)
        return
    finally:
        close_old_connections()
    for item, result in zip(live, results, strict=True):
        item[0].set_result(result)


class _Spoiled(Exception):
    """A unit left the group's transaction to be rolled back."""


def _spoiled() -> bool:
    """Whether this thread's transaction can no longer commit (Django marked it for rollback,
    or PostgreSQL aborted it after an error)."""
    connection = connections[DEFAULT_DB_ALIAS]
    if connection.needs_rollback:
        return True
    raw = connection.connection
    return (connection.vendor == "postgresql" and raw is not None
            and raw.info.transaction_status == psycopg.pq.TransactionStatus.INERROR)


def _copy(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return copy.copy(value)
    return value


def _settle_alone(item: _Item) -> None:
    """Run a unit already marked running, alone, and settle its future."""
    future, context, fn, args, kwargs, _ = item
    try:
        result = context.run(_unit, fn, args, kwargs)
    except BaseException as exc:
        future.set_exception(exc)
    else:
        future.set_result(result)


def retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


class DbThread:
    def __init__(self, name: str) -> None:
        self._pool = DbPool(name, 1, own_connections=False)

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self._pool.submit(fn, *args, **kwargs))


class Lane:
    """One caller's units of work on a ``DbPool``: each starts once the one submitted before
    it has finished (committed, rolled back or raised), whatever became of the coroutines
    that awaited them. A unit submitted runs, even when its caller is canceled meanwhile."""

    def __init__(self, pool: DbPool) -> None:
        self._pool = pool
        self._lock = threading.Lock()
        self._last: concurrent.futures.Future[Any] | None = None

    def submit(self, fn: Callable[..., T], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[T]:
        context = contextvars.copy_context()
        mine: concurrent.futures.Future[T] = concurrent.futures.Future()
        mine.set_running_or_notify_cancel()  # never canceled: a running unit cannot be

        def settle(done: concurrent.futures.Future[T]) -> None:
            if done.cancelled():  # nothing cancels a pool's futures; never leave ``mine`` open
                mine.set_exception(concurrent.futures.CancelledError())
                return
            exc = done.exception()
            if exc is not None:
                mine.set_exception(exc)
            else:
                mine.set_result(done.result())

        def start(_: object = None) -> None:
            try:
                self._pool.submit_in(context, fn, args, kwargs).add_done_callback(settle)
            except BaseException as exc:  # the pool is shut down: the process is exiting
                mine.set_exception(exc)

        with self._lock:
            last, self._last = self._last, mine
        if last is None:
            start()
        else:
            last.add_done_callback(start)
        return mine

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        """Submit ``fn`` and wait for its result. Canceling the wait does not cancel the unit
        (see the module's docstring)."""
        waited = asyncio.wrap_future(self.submit(fn, *args, **kwargs))
        # Once nobody awaits it (the caller was canceled), its outcome is not "lost".
        waited.add_done_callback(retrieve)
        return await asyncio.shield(waited)
