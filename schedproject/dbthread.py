"""Threads of sched's own for database work called from the event loop.

Channels' ``database_sync_to_async`` runs every caller's database work on one thread shared
by the whole process (asgiref's thread-sensitive executor), one call at a time. sched keeps
its hot paths off it:

- ``DbThread``: one thread for a loop (the dispatcher, the timer manager). A loop must not
  queue behind the sockets' traffic (a timer that fires late because a hundred completions
  were ahead of it is a late timer).
- ``DbPool``: a few threads shared by the callers of one edge (the worker sockets), so the
  transitions of independent runs proceed side by side; ``Lane`` runs one caller's units in
  the order submitted, one at a time, on whichever of the pool's threads is free.

Every unit of work runs with the thread's connection closed and reopened around it
(``close_old_connections``), as Django expects of long-lived threads: on PostgreSQL the
connection goes back to the pool between units, on SQLite the thread keeps its own until
``CONN_MAX_AGE``.

A caller's coroutine may be canceled (its socket went away) while its unit runs: the unit
is not interrupted, it runs to its commit or its rollback, and a lane's next unit starts
only after it. So whatever a unit does must be safe to do for a caller that is gone (the
consumer's completions are fenced by the task's token).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

from django.db import close_old_connections

T = TypeVar("T")


def _unit(fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
    close_old_connections()
    try:
        return fn(*args, **kwargs)
    finally:
        close_old_connections()


class DbThread:
    def __init__(self, name: str) -> None:
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"sched-{name}")

    async def run(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> T:
        return await asyncio.wrap_future(self._executor.submit(_unit, fn, args, kwargs))


class DbPool:
    """``size`` threads for database work; the threads start as work first needs them."""

    def __init__(self, name: str, size: int) -> None:
        self.size = size
        self._executor = ThreadPoolExecutor(max_workers=size, thread_name_prefix=f"sched-{name}")

    def submit(self, fn: Callable[..., T], /, *args: Any,
               **kwargs: Any) -> concurrent.futures.Future[T]:
        return self._executor.submit(_unit, fn, args, kwargs)

    def lane(self) -> Lane:
        return Lane(self)


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
        mine: concurrent.futures.Future[T] = concurrent.futures.Future()
        mine.set_running_or_notify_cancel()  # never canceled: a running unit cannot be

        def settle(done: concurrent.futures.Future[T]) -> None:
            if done.cancelled():  # only a pool shut down with its queue canceled does this
                mine.set_exception(concurrent.futures.CancelledError())
                return
            exc = done.exception()
            if exc is not None:
                mine.set_exception(exc)
            else:
                mine.set_result(done.result())

        def start(_: object = None) -> None:
            try:
                self._pool.submit(fn, *args, **kwargs).add_done_callback(settle)
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
        return await asyncio.shield(asyncio.wrap_future(self.submit(fn, *args, **kwargs)))

    async def idle(self) -> None:
        """Wait until every unit submitted so far has finished (whatever its outcome)."""
        last = self._last
        if last is not None and not last.done():
            await asyncio.wait([asyncio.wrap_future(last)])
