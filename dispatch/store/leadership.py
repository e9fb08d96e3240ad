"""Leadership rows: taking a singleton loop's next term, and fencing its writes by it.

A new leader increments the loop's ``term``; every write the loop makes checks its term in
the same transaction (``check_term``), so a leader that was paused and lost its lock cannot
write as leader any more. On PostgreSQL the term is taken on the leader lock's own
connection (``take_term_sql``); on SQLite through Django's (``take_term``).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from datetime import datetime

from django.db import connection

from dispatch.models import Leadership
from schedproject import config, sql
from schedproject.transactions import atomic

__all__ = ["ONLY", "Leadership", "NotLeader", "Shard", "check_term", "lock_dispatch", "shards",
           "take_term", "take_term_sql"]

DISPATCHER = "dispatcher"
DISPATCH_LOCK_KEY = zlib.crc32(b"sched:dispatch-slots")


@dataclass(frozen=True)
class Shard:
    """One dispatch shard: the runs whose id is ``index`` modulo ``count``. Shard 0 is the
    dispatcher's own leadership row (``dispatcher``); shard i > 0 is ``dispatcher-i``. With
    one shard, the dispatcher leases every run's tasks."""

    index: int = 0
    count: int = 1

    @property
    def name(self) -> str:
        return DISPATCHER if self.index == 0 else f"{DISPATCHER}-{self.index}"


ONLY = Shard()  # a deployment of one shard


def shards() -> list[Shard]:
    """The dispatch shards of this deployment (``SCHED_DISPATCH_SHARDS``)."""
    count = config.get().dispatch_shards
    return [Shard(i, count) for i in range(count)]


class NotLeader(Exception):
    """This process's leadership term is over: another leader has taken the lock."""


def check_term(name: str, term: int) -> None:
    """Inside a transaction: hold the leadership row (a new leader's term bump waits for us)
    and check that ``term`` is still current."""
    if not sql.fetch(f"SELECT 1 FROM {sql.table(Leadership)} WHERE name = %s AND term = %s"
                     f"{sql.for_no_key_update()}", [name, term]):
        raise NotLeader(f"{name}: term {term} is over")


def lock_dispatch() -> None:
    """Inside a transaction, on PostgreSQL: wait for the other dispatch shards' ticks that
    lease from the same workers' credit (until this transaction ends). On SQLite writers
    already take turns (``schedproject.transactions``)."""
    if connection.vendor != "postgresql":
        return
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_advisory_xact_lock(%s)", [DISPATCH_LOCK_KEY])


def take_term(name: str, *, holder: str, now: datetime) -> int:
    """Take the next term of ``name`` in a transaction of its own: call only while holding
    the loop's lock."""
    with atomic():
        row, _ = Leadership.objects.select_for_update().get_or_create(name=name)
        row.term += 1
        row.holder = holder
        row.renewed_at = now
        row.save()
        return row.term


def take_term_sql() -> str:
    """The statement that takes the next term (parameters: name, holder) and returns it, for
    a connection of the caller's own (the leader lock's, on PostgreSQL)."""
    table = Leadership._meta.db_table
    return (f"INSERT INTO {table} (name, term, holder, renewed_at) VALUES (%s, 1, %s, now()) "
            f"ON CONFLICT (name) DO UPDATE SET term = {table}.term + 1, "
            "holder = EXCLUDED.holder, renewed_at = now() RETURNING term")
