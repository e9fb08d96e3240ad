"""Leader election for the singleton loops (dispatcher, timer manager).

On PostgreSQL a loop runs only while its process holds a session advisory lock, taken with
``pg_try_advisory_lock`` on a dedicated connection that is not Django's (Django may close
its connections under us, and a session lock belongs to one physical connection). The leader
checks the connection every ``SCHED_LEADER_CHECK_SECONDS`` and steps down on any error.

A leader that dies closes its socket, and Postgres drops its lock at once. A leader that
hangs (SIGSTOP, a stalled event loop, a half-open network) would keep an open connection,
and so the lock, forever: the connection therefore sets ``idle_session_timeout`` to
``lease_seconds()``, a few check intervals, after which Postgres ends the silent session and
frees the lock for a standby. A standby retries every check interval, so a dead leader is
replaced within about one check interval and a hung one within ``lease_seconds()`` plus one.

A new leader increments the loop's ``term`` in the ``Leadership`` row; every write the loop
makes checks its term inside the same transaction. A leader that was paused (SIGSTOP, a long
GC) and lost its lock meanwhile cannot write as leader any more: its term is stale.

The dedicated connection also LISTENs for ``pg_notify`` wake-ups (see ``wakeup``), so the
leader learns of new work committed by any engine process at once.

On SQLite there is one engine process per database: the lock is an exclusive ``flock`` on a
file beside the database, so a second engine started by mistake waits as a standby instead
of running the loops twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import time
import zlib
from collections.abc import Callable, Coroutine
from typing import Any

import psycopg
from channels.db import database_sync_to_async
from django.conf import settings
from django.db import connection
from django.utils import timezone

from schedproject import config

from . import metrics, wakeup
from .engine import ENGINE_ID
from .store import leadership

log = logging.getLogger("sched.leader")
Loop = Callable[[int], Coroutine[Any, Any, None]]
LockConnection = psycopg.AsyncConnection[Any]  # the leader's own, not Django's


MIN_LEASE_SECONDS = 5.0


def lease_seconds() -> float:
    """How long a leader's lock connection may stay silent before Postgres ends it."""
    return max(3 * config.get().leader_check_seconds, MIN_LEASE_SECONDS)


def lock_key(name: str) -> int:
    return zlib.crc32(f"sched:{name}".encode())


def _new_term(name: str) -> int:
    """Take the next term of ``name``: call only while holding its lock."""
    return leadership.take_term(name, holder=ENGINE_ID, now=timezone.now())


new_term = database_sync_to_async(_new_term)


APPLICATION_NAME = "sched-engine:"  # + ENGINE_ID, on every election connection


class ShardBalance:
    """Spreads the dispatch shards over the engines that campaign for them (PostgreSQL).

    Engines are counted by their election connections (``application_name``
    ``sched-engine:<id>`` in ``pg_stat_activity``). An engine takes a free shard only while it
    leads fewer than its fair share (the shards over the engines, rounded up), and one that
    leads more than that (an engine joined) gives up its highest shard, one per check
    interval, and leaves it to the others for a few intervals. Shard 0 (the dispatcher's own
    name, which also reclaims silent workers) is never given up while led: it moves only when
    its leader goes away. An engine that dies closes its connections, so its shards are free
    at once and the others take them at their next try."""

    def __init__(self, shards: int, check_seconds: float) -> None:
        self.shards = shards
        self.check_seconds = check_seconds
        self.led: set[int] = set()
        self._released: dict[int, float] = {}
        self._engines = (0.0, 1)  # (read at, count)

    async def _engine_count(self, conn: LockConnection) -> int:
        read_at, count = self._engines
        if time.monotonic() - read_at < self.check_seconds:
            return count
        cur = await conn.execute(
            "SELECT count(DISTINCT application_name) FROM pg_stat_activity "
            "WHERE datname = current_database() AND application_name LIKE %s",
            [APPLICATION_NAME + "%"])
        row = await cur.fetchone()
        count = max(1, int(row[0]) if row else 1)
        self._engines = (time.monotonic(), count)
        return count

    async def fair_share(self, conn: LockConnection) -> int:
        return -(-self.shards // await self._engine_count(conn))

    async def may_take(self, index: int, conn: LockConnection) -> bool:
        released = self._released.get(index)
        if released is not None and time.monotonic() - released < 3 * self.check_seconds:
            return False
        return len(self.led) < await self.fair_share(conn)

    async def must_give_up(self, index: int, conn: LockConnection) -> bool:
        if index == 0 or index != max(self.led, default=-1):
            return False
        if len(self.led) <= await self.fair_share(conn):
            return False
        self._released[index] = time.monotonic()
        return True


class LeaderElection:
    """Runs ``loop(term)`` while this process leads ``name``; waits as a standby otherwise.
    With ``shard`` and ``balance`` (a dispatch shard), it also takes and gives up the lead as
    ``balance`` says, to spread the shards over the engines."""

    def __init__(self, name: str, wake_name: str, loop: Loop, *,
                 retry_seconds: float | None = None, wake_names: tuple[str, ...] = (),
                 shard: int | None = None, balance: ShardBalance | None = None) -> None:
        self.name = name
        self.wake_name = wake_name
        self.wake_names = {wake_name, *wake_names}  # pg_notify payloads forwarded
        self.loop = loop
        self.check_seconds = config.get().leader_check_seconds
        self.retry_seconds = retry_seconds or self.check_seconds
        self.shard = shard
        self.balance = balance
        metrics.set_leader(name, False)

    async def run(self) -> None:
        if connection.vendor != "postgresql":
            await self._run_on_file_lock()
            return
        while True:
            try:
                await self._campaign()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.warning("%s: leader connection failed (%s); retrying", self.name, exc)
            await asyncio.sleep(self.retry_seconds)

    async def _run_on_file_lock(self) -> None:
        path = config.get().data_dir / f"{self.name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = await asyncio.to_thread(path.open, "a+")
        with handle:
            while True:
                try:
                    fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(self.retry_seconds)
            try:
                await self._lead(None)
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    async def _campaign(self) -> None:
        db = settings.DATABASES["default"]
        conn = await psycopg.AsyncConnection.connect(
            host=str(db.get("HOST") or "") or None, port=str(db.get("PORT") or "") or None,
            dbname=str(db["NAME"]), user=str(db.get("USER") or "") or None,
            password=str(db.get("PASSWORD") or "") or None, autocommit=True, connect_timeout=5,
            application_name=APPLICATION_NAME + ENGINE_ID[-40:],
        )
        async with conn:
            idle_ms = int(lease_seconds() * 1000)
            await conn.execute(f"SET idle_session_timeout = {idle_ms}")
            while True:
                if self.balance is None or await self.balance.may_take(self._index, conn):
                    cur = await conn.execute("SELECT pg_try_advisory_lock(%s)",
                                             [lock_key(self.name)])
                    row = await cur.fetchone()
                    if row and row[0]:
                        break
                else:
                    await conn.execute("SELECT 1")  # keep the connection (and its count) alive
                await asyncio.sleep(self.retry_seconds)
            await conn.execute(f"LISTEN {wakeup.PG_CHANNEL}")
            # The term is taken on the lock's own connection: waiting there for a paused
            # old leader's row lock keeps the connection busy, where waiting on another one
            # would leave it idle long enough for idle_session_timeout to end it (and the lock).
            cur = await conn.execute(leadership.take_term_sql(), [self.name, ENGINE_ID])
            row = await cur.fetchone()
            assert row is not None
            await self._lead(conn, int(row[0]))

    @property
    def _index(self) -> int:
        return self.shard or 0

    async def _lead(self, conn: LockConnection | None, term: int | None = None) -> None:
        if term is None:
            term = await new_term(self.name)
        log.info("%s: leading, term %d", self.name, term)
        metrics.set_leader(self.name, True)
        wakeup.local_leaders.add(self.wake_name)
        if self.balance is not None:
            self.balance.led.add(self._index)
        task = asyncio.create_task(self.loop(term), name=f"sched-{self.name}")
        try:
            if conn is None:
                await task
                return
            await self._watch(conn, task)
        finally:
            metrics.set_leader(self.name, False)
            wakeup.local_leaders.discard(self.wake_name)
            if self.balance is not None:
                self.balance.led.discard(self._index)
            if not task.done():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            log.info("%s: stepped down from term %d", self.name, term)

    async def _watch(self, conn: LockConnection, task: asyncio.Task[None]) -> None:
        """Forward wake-ups and check the lock's connection until either fails."""
        while not task.done():
            async for notice in conn.notifies(timeout=self.check_seconds, stop_after=100):
                if notice.payload in self.wake_names:
                    wakeup.wake(notice.payload)
            await conn.execute("SELECT 1")
            if self.balance is not None and await self.balance.must_give_up(self._index, conn):
                log.info("%s: giving the shard to another engine", self.name)
                return
        task.result()  # re-raise what ended the loop
