"""Queries and the client's listing and handles, against a real engine and worker processes.

The worker serves ``tests.e2e.query_workflows`` on the task queue ``queries``; a second worker
started later (a fresh process, nothing cached) answers by replaying the run's history.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import sdk

from .harness import Engine, Proc, Stack, wait_for

MODULE = "tests.e2e.query_workflows"
QUEUE = "queries"


@pytest.fixture(scope="module")
def query_worker(stack: Stack, engine: Engine, logs: Path) -> Iterator[Proc]:
    w = stack.worker(MODULE, task_queue=QUEUE, engine=engine, log=logs / "query-worker.log")
    yield w
    w.stop()


@pytest.fixture
def qclient(stack: Stack, engine: Engine, query_worker: Proc) -> Iterator[sdk.Client]:
    with sdk.Client(engine.url, token=stack.token) as c:
        yield c


def start(client: sdk.Client, workflow: str, input: Any) -> sdk.WorkflowHandle:
    return client.start_workflow(workflow, input, workflow_id=f"{workflow}-{uuid.uuid4().hex}",
                                 task_queue=QUEUE)


def answered(handle: sdk.WorkflowHandle, name: str, *args: Any) -> Any:
    """The query's result once the run has run its first task (before that it has no
    handlers: ``query_not_found``)."""
    def ask() -> tuple[Any] | None:
        try:
            return (handle.query(name, *args),)
        except sdk.SchedAPIError as err:
            if err.code == "query_not_found" and "not run yet" in err.message:
                return None
            raise
    return wait_for(ask, timeout=30, interval=0.1)[0]


def test_a_running_workflow_answers_and_signals_show_in_its_answers(
        qclient: sdk.Client) -> None:
    handle = start(qclient, "query_counter", 10)
    assert answered(handle, "count") == 10
    handle.signal("add", 5)
    handle.signal("add", 7)
    wait_for(lambda: handle.query("count") == 22, timeout=30)
    assert handle.query("plus", 100) == 122
    assert handle.query("state") == {"count": 22, "signals": 2}
    handle.signal("stop")
    assert handle.result(timeout=30) == {"count": 22, "signals": 2}


def test_queries_write_nothing_to_history_or_the_run(qclient: sdk.Client) -> None:
    handle = start(qclient, "query_counter", 1)
    assert answered(handle, "count") == 1
    events = handle.history()
    described = handle.describe()
    for i in range(5):
        assert handle.query("plus", i) == 1 + i
    with pytest.raises(sdk.SchedAPIError):
        handle.query("sneaky")
    assert handle.history() == events
    after = handle.describe()
    assert after["history_length"] == described["history_length"] == len(events)
    assert after["status"] == "running"


def test_an_unknown_query_is_404_query_not_found(qclient: sdk.Client) -> None:
    handle = start(qclient, "query_counter", 0)
    answered(handle, "count")
    with pytest.raises(sdk.SchedAPIError) as err:
        handle.query("no_such_query")
    assert (err.value.status_code, err.value.code) == (404, "query_not_found")
    assert "'count'" in err.value.message  # the handlers it has


def test_a_failing_handler_and_a_command_from_a_handler_fail_the_query_only(
        qclient: sdk.Client) -> None:
    handle = start(qclient, "query_counter", 3)
    answered(handle, "count")
    with pytest.raises(sdk.SchedAPIError) as raised:
        handle.query("boom")
    assert (raised.value.status_code, raised.value.code) == (422, "query_failed")
    assert "KeyError" in raised.value.message
    with pytest.raises(sdk.SchedAPIError) as commanded:
        handle.query("sneaky")
    assert (commanded.value.status_code, commanded.value.code) == (422, "query_failed")
    assert "must not change the workflow" in commanded.value.message
    # The workflow is unharmed and goes on (its cached instance was dropped and replays).
    handle.signal("add", 4)
    wait_for(lambda: handle.query("count") == 7, timeout=30)
    handle.signal("stop")
    assert handle.result(timeout=30) == {"count": 7, "signals": 1}
    types = [e["event_type"] for e in handle.history()]
    assert "ActivityTaskScheduled" not in types
    assert "WorkflowTaskFailed" not in types


def test_a_closed_run_is_answered_by_a_fresh_worker_replaying_it(
        stack: Stack, engine: Engine, logs: Path, qclient: sdk.Client,
        query_worker: Proc) -> None:
    handle = start(qclient, "query_counter", 100)
    answered(handle, "count")
    handle.signal("add", 1)
    handle.signal("stop")
    assert handle.result(timeout=30) == {"count": 101, "signals": 1}
    assert handle.query("count") == 101
    sleeper = start(qclient, "query_sleeper", 3600)
    assert answered(sleeper, "phase") == "sleeping"
    query_worker.stop()
    fresh = stack.worker(MODULE, task_queue=QUEUE, engine=engine,
                         log=logs / "query-worker-fresh.log")
    try:
        # A worker that never ran these runs: it replays each history to answer.
        assert wait_for(lambda: _or_none(handle, "state"), timeout=30) == {
            "count": 101, "signals": 1}
        assert wait_for(lambda: _or_none(sleeper, "phase"), timeout=30) == "sleeping"
        assert handle.describe()["status"] == "completed"
        sleeper.terminate(reason="done")
    finally:
        fresh.stop()
        restarted = stack.worker(MODULE, task_queue=QUEUE, engine=engine,
                                 log=logs / "query-worker.log")
        query_worker.popen = restarted.popen


def _or_none(handle: sdk.WorkflowHandle, name: str) -> Any:
    """The answer, or None while no worker is connected yet (504 ``no_worker``)."""
    try:
        return handle.query(name)
    except sdk.SchedAPIError as err:
        if err.code == "no_worker":
            return None
        raise


def test_no_worker_for_the_type_is_504_no_worker(qclient: sdk.Client) -> None:
    handle = qclient.start_workflow("query_counter", 0, task_queue="nobody-serves-this")
    with pytest.raises(sdk.SchedAPIError) as err:
        handle.query("count")
    assert (err.value.status_code, err.value.code) == (504, "no_worker")
    handle.terminate(reason="cleanup")


def test_the_client_lists_describes_reads_cancels_and_terminates(
        qclient: sdk.Client) -> None:
    marker = uuid.uuid4().hex[:8]
    ids = [f"list-{marker}-{i}" for i in range(5)]
    for workflow_id in ids:
        qclient.start_workflow("query_counter", 0, workflow_id=workflow_id, task_queue=QUEUE)
    listed = [r["workflow_id"] for r in qclient.list_workflows(
        status="running", workflow_type="query_counter", query={"task_queue": QUEUE},
        page_size=2)]
    assert set(ids) <= set(listed)
    assert len(listed) == len(set(listed))  # pages neither repeat nor skip
    assert [r["workflow_id"] for r in qclient.list_workflows(
        query={"workflow_id": ids[0]})] == [ids[0]]

    canceled = qclient.get_workflow_handle(ids[0])
    answered(canceled, "count")
    canceled.cancel(reason="no longer needed")
    with pytest.raises(sdk.WorkflowFailureError):
        canceled.result(timeout=30)
    assert canceled.describe()["status"] == "canceled"

    terminated = qclient.get_workflow_handle(ids[1])
    terminated.terminate(reason="stop now")
    assert terminated.describe()["status"] == "terminated"
    events = terminated.history()
    assert events[0]["event_type"] == "WorkflowExecutionStarted"
    assert events[-1]["event_type"] == "WorkflowExecutionTerminated"
    assert events[-1]["attributes"]["reason"] == "stop now"
    assert [e["event_id"] for e in events] == list(range(1, len(events) + 1))

    closed = {r["workflow_id"]: r["status"] for r in qclient.list_workflows(
        workflow_type="query_counter", query={"task_queue": QUEUE}, page_size=3)}
    assert closed[ids[0]] == "canceled" and closed[ids[1]] == "terminated"
    # The same in Temporal's list filter syntax.
    assert sorted(r["workflow_id"] for r in qclient.list_workflows(query=(
        f"WorkflowId STARTS_WITH 'list-{marker}-' AND (ExecutionStatus = 'Canceled' "
        f"OR ExecutionStatus = 'Terminated') AND CloseTime IS NOT NULL"))) == ids[:2]
    with pytest.raises(sdk.SchedAPIError) as refused:
        list(qclient.list_workflows(query="WorkflowId = "))
    assert refused.value.code == "invalid_query"
    for workflow_id in ids[2:]:
        qclient.get_workflow_handle(workflow_id).terminate(reason="cleanup")


def test_the_async_client_queries_and_lists(stack: Stack, engine: Engine,
                                            query_worker: Proc) -> None:
    async def until(ask: Any, done: Any) -> Any:
        for _ in range(300):
            try:
                value = await ask()
            except sdk.SchedAPIError as err:
                if err.code != "query_not_found":
                    raise
            else:
                if done(value):
                    return value
            await asyncio.sleep(0.1)
        raise TimeoutError("no such answer in time")

    async def scenario() -> None:
        async with sdk.AsyncClient(engine.url, token=stack.token) as client:
            handle = await client.start_workflow("query_counter", 5, task_queue=QUEUE)
            assert await until(lambda: handle.query("count"), lambda v: True) == 5
            await handle.signal("add", 1)
            again = client.get_workflow_handle(handle.workflow_id)
            await until(lambda: again.query("count"), lambda v: v == 6)
            assert await again.query("plus", 1) == 7
            ids = [r["workflow_id"] async for r in client.list_workflows(
                status="running", workflow_type="query_counter", query={"task_queue": QUEUE},
                page_size=1)]
            assert handle.workflow_id in ids
            assert (await again.describe())["status"] == "running"
            assert (await again.history())[0]["event_type"] == "WorkflowExecutionStarted"
            await again.terminate(reason="done")
            assert (await again.describe())["status"] == "terminated"

    asyncio.run(scenario())


@pytest.mark.skipif(
    not (os.environ.get("DATABASE_URL", "").startswith(("postgres", "pgsql"))
         and os.environ.get("REDIS_URL", "").startswith("redis")),
    reason="two engines need a shared PostgreSQL (DATABASE_URL) and Redis (REDIS_URL)")
def test_a_query_to_one_engine_reaches_a_worker_connected_to_another(
        stack: Stack, engine: Engine, logs: Path, query_worker: Proc) -> None:
    other = stack.engine(log=logs / "query-engine-2.log")
    queue = f"queries-{uuid.uuid4().hex[:6]}"
    far = stack.worker(MODULE, task_queue=queue, engine=other, log=logs / "query-far.log")
    try:
        with sdk.Client(engine.url, token=stack.token) as near:
            handle = near.start_workflow("query_counter", 40, task_queue=queue)
            assert answered(handle, "count") == 40  # asked of this engine, answered via the other
            handle.signal("add", 2)
            wait_for(lambda: handle.query("count") == 42, timeout=30)
            with pytest.raises(sdk.SchedAPIError) as err:
                handle.query("nope")
            assert err.value.code == "query_not_found"
            handle.terminate(reason="done")
            # A closed run: the far worker replays it for a query through this engine.
            assert handle.query("state") == {"count": 42, "signals": 1}
    finally:
        far.stop()
        other.stop()


def test_the_lean_path_answers_queries_as_the_drf_view_does(
        stack: Stack, engine: Engine, logs: Path, qclient: sdk.Client) -> None:
    """The same queries, good and bad, through the engine's lean path (the default) and
    through Django's request cycle (``SCHED_LEAN_API=0``): the same status, body and headers.
    Answers from a worker need both engines on one channel layer (Redis); without it the
    reference engine is asked only what needs no worker."""
    wait = {"SCHED_QUERY_WORKER_WAIT_SECONDS": "0.5"}
    reference = stack.engine(log=logs / "query-reference-engine.log",
                             extra_env={"SCHED_LEAN_API": "0", "SCHED_RUN_LOOPS": "0", **wait})
    try:
        handle = start(qclient, "query_counter", 8)
        assert answered(handle, "count") == 8
        lonely = qclient.start_workflow("query_counter", 0, task_queue="nobody-here")
        auth = {"Authorization": f"Bearer {stack.token}"}
        cases: list[tuple[str, Any]] = [
            (f"{handle.workflow_id}/queries/plus", {"args": "x"}),
            (f"{handle.workflow_id}/queries/plus", {"args": [1], "run_id": "nope"}),
            ("no-such-workflow/queries/count", {"args": []}),
            (f"{lonely.workflow_id}/queries/count", {"args": []}),
        ]
        if os.environ.get("REDIS_URL", "").startswith("redis"):
            cases += [(f"{handle.workflow_id}/queries/plus", {"args": [2]}),
                      (f"{handle.workflow_id}/queries/nope", {"args": []}),
                      (f"{handle.workflow_id}/queries/boom", {})]
        statuses = []
        for path, body in cases:
            answers = [httpx.post(f"{e.url}/api/workflows/{path}", json=body, headers=auth,
                                  timeout=30) for e in (engine, reference)]
            lean, drf = answers
            assert lean.status_code == drf.status_code, (path, lean.text, drf.text)
            assert lean.json() == drf.json(), path
            for header in ("content-type", "allow", "x-frame-options",
                           "x-content-type-options"):
                assert lean.headers.get(header) == drf.headers.get(header), (path, header)
            statuses.append(lean.status_code)
        assert statuses[:4] == [422, 422, 404, 504]
        lonely.terminate(reason="cleanup")
    finally:
        reference.stop()
