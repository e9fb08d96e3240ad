"""``schedproject.sql.deferring``: a transition's writes go to PostgreSQL in one round trip,
and nothing a reader can tell changes: every read sees the writes made before it, writes run
in the order they were made, and a failing write fails its transaction."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import DatabaseError, connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from dispatch.models import Task, TaskKind, TaskState
from schedproject import sql
from workflows.models import Execution
from workflows.services import workflow_start

from .conftest import QUEUE, WORKFLOW

pytestmark = pytest.mark.django_db(transaction=True)
on_postgres = pytest.mark.skipif(connection.vendor != "postgresql",
                                 reason="SQLite has no round trips to save: writes run at once")


def _task(run: Execution, seq: int) -> Task:
    return Task(execution=run, kind=TaskKind.ACTIVITY, task_queue=QUEUE, type_name="charge",
                scheduled_event_id=100 + seq, attempt=1, seq=seq, input=None, options={},
                created_at=timezone.now())


def _statements(captured: list[dict[str, Any]]) -> list[str]:
    return [q["sql"] for q in captured if q["sql"] not in ("BEGIN", "COMMIT")]


@on_postgres
def test_writes_go_together_and_reads_see_them_first() -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="deferred")
    with CaptureQueriesContext(connection) as captured, transaction.atomic():
        with sql.deferring():
            sql.insert([_task(run, 1), _task(run, 2)])
            sql.write(f"DELETE FROM {sql.table(Task)} WHERE execution_id = %s AND seq = %s",
                      [run.pk, 1])
            assert _statements(captured.captured_queries) == []  # held so far
            # A read (here through the ORM) first sends what is held, in order.
            seqs = list(Task.objects.filter(execution=run, kind=TaskKind.ACTIVITY)
                        .values_list("seq", flat=True))
            assert seqs == [2]
            sql.write(f"UPDATE {sql.table(Task)} SET state = %s WHERE execution_id = %s "
                      "AND seq = %s", [TaskState.BACKOFF.value, run.pk, 2])
        # The block's end sent the last one.
    statements = _statements(captured.captured_queries)
    assert len(statements) == 3, statements  # insert+delete together, the read, the update
    assert statements[0].count("; ") == 1
    assert Task.objects.get(execution=run, seq=2).state == TaskState.BACKOFF


@on_postgres
def test_a_failing_held_write_fails_its_transaction() -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="failing")
    before = Task.objects.count()
    with pytest.raises(DatabaseError), transaction.atomic(), sql.deferring():
        sql.insert([_task(run, 1)])
        sql.write("UPDATE no_such_table SET x = %s", [1])
    assert Task.objects.count() == before  # the insert held with it was rolled back


@on_postgres
def test_an_exception_in_the_block_drops_what_is_held() -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="dropped")
    before = Task.objects.count()
    with pytest.raises(RuntimeError), sql.deferring():
        sql.insert([_task(run, 1)])
        raise RuntimeError("the transition failed")
    assert Task.objects.count() == before
    sql.insert([_task(run, 2)])  # and the next write, outside any block, runs at once
    assert Task.objects.count() == before + 1


@pytest.mark.skipif(connection.vendor == "postgresql", reason="the embedded default's rule")
def test_on_sqlite_writes_run_at_once() -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="at-once")
    with CaptureQueriesContext(connection) as captured, sql.deferring():
        sql.insert([_task(run, 1)])
        assert [q for q in _statements(captured.captured_queries) if "INSERT" in q]
    assert Task.objects.filter(execution=run, seq=1).exists()


# ---- the helpers' own cursor: bound on the server, prepared, errors as Django's -----------


@on_postgres
def test_the_helpers_bind_on_the_server_and_prepare_what_repeats() -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="prepared")
    statement = f"SELECT workflow_id FROM {sql.table(Execution)} WHERE id = %s"
    with transaction.atomic():  # one connection throughout
        for _ in range(8):
            assert sql.fetch(statement, [run.pk]) == [("prepared",)]
        prepared = [row[0] for row in sql.fetch(
            "SELECT statement FROM pg_prepared_statements WHERE statement LIKE %s",
            ["%WHERE id = $1"])]
    assert prepared == [statement.replace("%s", "$1")]


@on_postgres
def test_held_writes_go_as_one_pipeline_in_order_and_reads_see_them() -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="pipelined")
    seqs = f"SELECT seq FROM {sql.table(Task)} WHERE execution_id = %s AND kind = %s"
    with transaction.atomic():
        with sql.deferring():
            sql.insert([_task(run, 1), _task(run, 2)])
            sql.write(f"DELETE FROM {sql.table(Task)} WHERE execution_id = %s AND seq = %s",
                      [run.pk, 1])
            # The helpers' own read first sends what is held, in order (not only the ORM's).
            assert sql.fetch(seqs, [run.pk, TaskKind.ACTIVITY.value]) == [(2,)]
            sql.write(f"UPDATE {sql.table(Task)} SET state = %s WHERE execution_id = %s "
                      "AND seq = %s", [TaskState.BACKOFF.value, run.pk, 2])
            sql.write(f"UPDATE {sql.table(Task)} SET attempt = %s WHERE execution_id = %s "
                      "AND seq = %s", [7, run.pk, 2])
    task = Task.objects.get(execution=run, seq=2)
    assert (task.state, task.attempt) == (TaskState.BACKOFF, 7)


@on_postgres
def test_a_duplicate_row_is_djangos_integrity_error() -> None:
    """The start path tells a lost race by Django's ``IntegrityError``: the helpers' cursor
    raises Django's errors, as Django's cursors do."""
    from django.db import IntegrityError

    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="duplicate")
    twin = Execution(workflow_id="duplicate", run_id=run.run_id, workflow_type=WORKFLOW,
                     task_queue=QUEUE, status="running", created_at=timezone.now())
    with pytest.raises(IntegrityError), transaction.atomic():
        sql.insert_one(twin)
    with pytest.raises(IntegrityError), transaction.atomic(), sql.deferring():
        sql.insert([twin])
