"""Group commit (``schedproject.dbthread``, ``schedproject.transactions.grouped``): grouped
units queued together run in one transaction, ordered by key with each key's units in the
order they came; a unit that fails leaves the others' outcomes as they would have been alone,
and nothing of its own work is committed."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from django.db import DatabaseError, connection

from schedproject import sql
from schedproject.dbthread import DbPool
from schedproject.transactions import atomic
from workflows.errors import Conflict
from workflows.models import Execution
from workflows.services import workflow_start

from .conftest import QUEUE, WORKFLOW

pytestmark = pytest.mark.django_db(transaction=True)
TXID = ("SELECT txid_current()" if connection.vendor == "postgresql"
        else "SELECT 0")  # SQLite: one writer, no ids to tell transactions apart


@contextmanager
def _queued(name: str) -> Iterator[DbPool]:
    """A pool of one thread, held busy while the block submits: what it submits queues up,
    and is taken (as a group, where it may be) once the block ends. The pool stops after."""
    pool = DbPool(name, 1)
    go, started = threading.Event(), threading.Event()

    def block() -> None:
        started.set()
        go.wait(10)

    try:
        blocker = pool.submit(block)
        assert started.wait(10)
        yield pool
        go.set()
        blocker.result(10)
    finally:
        go.set()
        pool.stop()


def _rename(run_id: int, name: str, seen: list[tuple[int, str]]) -> int:
    """A unit: renames a run's type, inside its ``atomic()``; returns its transaction id."""
    with atomic():
        sql.write(f"UPDATE {sql.table(Execution)} SET workflow_type = %s WHERE id = %s",
                  [name, run_id])
        seen.append((run_id, name))
        return int(sql.fetch(TXID, [])[0][0])


def _fail(run_id: int, seen: list[tuple[int, str]]) -> None:
    with atomic():
        sql.write(f"UPDATE {sql.table(Execution)} SET workflow_type = %s WHERE id = %s",
                  ["failed", run_id])
        seen.append((run_id, "fail"))
        raise Conflict("this unit's task is stale", code="stale_task")


def _runs(n: int) -> list[int]:
    return [workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE,
                           workflow_id=f"group-{i}").pk for i in range(n)]


def _types(ids: list[int]) -> list[str]:
    by_id = dict(Execution.objects.filter(pk__in=ids).values_list("pk", "workflow_type"))
    return [by_id[i] for i in ids]


def test_grouped_units_share_one_transaction_in_key_order() -> None:
    a, b, c = _runs(3)
    seen: list[tuple[int, str]] = []
    with _queued("test-group") as pool:
        futures = [pool.submit_grouped(c, _rename, c, "c1", seen),
                   pool.submit_grouped(a, _rename, a, "a1", seen),
                   pool.submit_grouped(c, _rename, c, "c2", seen),
                   pool.submit_grouped(b, _rename, b, "b1", seen)]
    txids = [f.result(10) for f in futures]
    # By key (run id), and one key's units in the order they came.
    assert seen == [(a, "a1"), (b, "b1"), (c, "c1"), (c, "c2")]
    assert _types([a, b, c]) == ["a1", "b1", "c2"]
    if connection.vendor == "postgresql":
        assert len(set(txids)) == 1, txids


def test_a_failing_unit_fails_alone_and_the_others_commit() -> None:
    a, b, c = _runs(3)
    seen: list[tuple[int, str]] = []
    with _queued("test-group-fail") as pool:
        ok_a = pool.submit_grouped(a, _rename, a, "a1", seen)
        bad = pool.submit_grouped(b, _fail, b, seen)
        ok_c = pool.submit_grouped(c, _rename, c, "c1", seen)
    with pytest.raises(Conflict):
        bad.result(10)
    txids = [ok_a.result(10), ok_c.result(10)]
    # The group ran a, then b failed: it was rolled back and each unit ran again alone.
    assert seen[:2] == [(a, "a1"), (b, "fail")]
    assert sorted(seen[2:]) == sorted([(a, "a1"), (b, "fail"), (c, "c1")])
    assert _types([a, b, c]) == ["a1", WORKFLOW, "c1"]  # nothing of the failed unit
    if connection.vendor == "postgresql":
        assert txids[0] != txids[1]  # each in a transaction of its own


def test_a_unit_that_is_not_grouped_runs_alone_beside_a_group() -> None:
    a, b = _runs(2)
    seen: list[tuple[int, str]] = []
    with _queued("test-group-mixed") as pool:
        grouped = [pool.submit_grouped(a, _rename, a, "a1", seen),
                   pool.submit_grouped(b, _rename, b, "b1", seen)]
        alone = pool.submit(_rename, a, "a2", seen)
    txids = [f.result(10) for f in grouped]
    last = alone.result(10)
    assert seen == [(a, "a1"), (b, "b1"), (a, "a2")]
    assert _types([a, b]) == ["a2", "b1"]
    if connection.vendor == "postgresql":
        assert txids[0] == txids[1] != last


def _swallow(run_id: int, seen: list[tuple[int, str]]) -> str:
    """A unit that runs a failing statement and goes on (its own transaction, alone, would
    end in a rollback of its own work only)."""
    with atomic():
        seen.append((run_id, "swallow"))
        try:
            sql.fetch("SELECT no_such_column FROM no_such_table", [])
        except DatabaseError:
            pass
        return "went on"


@pytest.mark.skipif(connection.vendor != "postgresql",
                    reason="SQLite has no aborted transaction to commit")
def test_a_unit_that_swallows_a_database_error_does_not_take_the_group_with_it() -> None:
    a, b, c = _runs(3)
    seen: list[tuple[int, str]] = []
    with _queued("test-group-spoiled") as pool:
        ok_a = pool.submit_grouped(a, _rename, a, "a1", seen)
        ok_b = pool.submit_grouped(b, _rename, b, "b1", seen)
        odd = pool.submit_grouped(c, _swallow, c, seen)  # the group's last unit
    assert odd.result(10) == "went on"
    ok_a.result(10)
    ok_b.result(10)
    # The group saw c's transaction aborted and ran each alone: a's and b's work committed
    # (a COMMIT of the aborted transaction would have rolled it back without a word).
    assert _types([a, b, c]) == ["a1", "b1", WORKFLOW]
