"""Updates against a real engine and worker processes: validated on the worker (a rejection
records nothing), accepted, run by the workflow (an async handler runs an activity and a
timer), answered; failed updates, idempotent update ids, closed runs, a fresh worker that
replays the run to validate."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sdk

from .harness import Engine, Proc, Stack, wait_for

MODULE = "tests.e2e.update_workflows"
QUEUE = "updates"


@pytest.fixture(scope="module")
def update_worker(stack: Stack, engine: Engine, logs: Path) -> Iterator[Proc]:
    w = stack.worker(MODULE, task_queue=QUEUE, engine=engine, log=logs / "update-worker.log")
    yield w
    w.stop()


@pytest.fixture
def uclient(stack: Stack, engine: Engine, update_worker: Proc) -> Iterator[sdk.Client]:
    with sdk.Client(engine.url, token=stack.token) as c:
        yield c


def start(client: sdk.Client, owner: str) -> sdk.WorkflowHandle:
    return client.start_workflow("update_cart", owner, workflow_id=f"cart-{uuid.uuid4().hex}",
                                 task_queue=QUEUE)


def types(handle: sdk.WorkflowHandle) -> list[str]:
    return [e["event_type"] for e in handle.history()]


def test_updates_change_the_run_and_answer_and_rejections_record_nothing(
        uclient: sdk.Client) -> None:
    handle = start(uclient, "ann")
    # Asked at once: the engine waits for the run's first task before validating.
    assert handle.execute_update("add", "tea") == 1
    assert handle.execute_update("add", "cup", update_id="add-cup") == 2
    before = handle.history()
    for bad, says in (("", "an item needs a name"), ("tea", "'tea' is in the cart already")):
        with pytest.raises(sdk.SchedAPIError) as rejected:
            handle.execute_update("add", bad)
        assert (rejected.value.status_code, rejected.value.code) == (422, "update_rejected")
        assert rejected.value.message == says
    with pytest.raises(sdk.SchedAPIError) as missing:
        handle.execute_update("remove", "tea")
    assert (missing.value.status_code, missing.value.code) == (404, "update_not_found")
    assert handle.history() == before  # nothing written
    # The same update id: its first outcome, not a third item.
    assert handle.execute_update("add", "cup", update_id="add-cup") == 2
    assert handle.query("items") == ["tea", "cup"]
    assert handle.execute_update("checkout", "SPRING") == "ann paid 6 with SPRING"
    assert handle.result(timeout=30) == {"owner": "ann", "items": ["tea", "cup"], "paid": 6}
    seen = types(handle)
    assert seen.count("WorkflowExecutionUpdateAccepted") == 3
    assert seen.count("WorkflowExecutionUpdateCompleted") == 3
    assert "ActivityTaskScheduled" in seen and "TimerFired" in seen
    # A closed run takes no update.
    with pytest.raises(sdk.SchedAPIError) as closed:
        handle.execute_update("add", "late")
    assert (closed.value.status_code, closed.value.code) == (409, "run_closed")


def test_a_failed_update_fails_only_the_update(uclient: sdk.Client) -> None:
    handle = start(uclient, "bob")
    with pytest.raises(sdk.WorkflowUpdateFailedError) as failed:
        handle.execute_update("checkout", update_id="empty")
    assert (failed.value.status_code, failed.value.code) == (422, "update_failed")
    assert failed.value.failure is not None
    assert failed.value.failure["type"] == "EmptyCart"
    assert failed.value.failure["details"] == {"owner": "bob"}
    assert handle.describe()["status"] == "running"
    # Asked again under its id, the same failure; the run goes on.
    with pytest.raises(sdk.WorkflowUpdateFailedError):
        handle.execute_update("checkout", update_id="empty")
    assert handle.execute_update("add", "tea") == 1
    assert handle.execute_update("checkout") == "bob paid 3"
    assert handle.result(timeout=30)["paid"] == 3
    assert "WorkflowTaskFailed" not in types(handle)


def test_update_with_start_starts_the_run_once_and_updates_it(uclient: sdk.Client) -> None:
    workflow_id = f"cart-{uuid.uuid4().hex}"
    for item, count in (("tea", 1), ("cup", 2)):  # the second call finds the run open
        assert uclient.execute_update_with_start(
            "add", item, workflow_type="update_cart", input="dee", workflow_id=workflow_id,
            task_queue=QUEUE) == count
    assert [r["workflow_id"] for r in uclient.list_workflows(
        query=f"WorkflowId = '{workflow_id}'")] == [workflow_id]
    handle = uclient.get_workflow_handle(workflow_id)
    assert handle.query("items") == ["tea", "cup"]
    assert handle.execute_update("checkout") == "dee paid 6"
    assert handle.result(timeout=30)["items"] == ["tea", "cup"]


def test_the_async_client_executes_updates(stack: Stack, engine: Engine,
                                           update_worker: Proc) -> None:
    async def scenario() -> None:
        async with sdk.AsyncClient(engine.url, token=stack.token) as client:
            handle = await client.start_workflow(
                "update_cart", "cy", workflow_id=f"cart-{uuid.uuid4().hex}", task_queue=QUEUE)
            assert await handle.execute_update("add", "tea") == 1
            with pytest.raises(sdk.SchedAPIError) as rejected:
                await handle.execute_update("add", "tea")
            assert rejected.value.code == "update_rejected"
            assert await handle.execute_update("checkout") == "cy paid 3"
            assert (await handle.result(timeout=30))["items"] == ["tea"]

    asyncio.run(scenario())


def test_a_fresh_worker_replays_the_run_to_validate_and_run_an_update(
        stack: Stack, engine: Engine, logs: Path, uclient: sdk.Client,
        update_worker: Proc) -> None:
    handle = start(uclient, "dee")
    assert handle.execute_update("add", "tea") == 1
    update_worker.stop()
    fresh = stack.worker(MODULE, task_queue=QUEUE, engine=engine,
                         log=logs / "update-worker-fresh.log")
    try:
        # A worker that never ran the run: it validates against the replayed state.
        assert wait_for(lambda: _code_once_connected(handle, "add", "tea"),
                        timeout=30) == "update_rejected"
        assert handle.execute_update("add", "cup") == 2
        assert handle.execute_update("checkout") == "dee paid 6"
        assert handle.result(timeout=30)["items"] == ["tea", "cup"]
    finally:
        fresh.stop()
        update_worker.popen = stack.worker(MODULE, task_queue=QUEUE, engine=engine,
                                           log=logs / "update-worker-again.log").popen


def _code_once_connected(handle: sdk.WorkflowHandle, name: str, *args: Any) -> str | None:
    """The error code of the update, or None while no worker is connected (``no_worker``)."""
    try:
        handle.execute_update(name, *args)
    except sdk.SchedAPIError as err:
        return None if err.code == "no_worker" else err.code
    return "ok"


def test_the_documented_example_runs_against_an_engine(stack: Stack, engine: Engine,
                                                       logs: Path) -> None:
    w = stack.worker("tests.e2e.docs_update_workflows", task_queue="docs-updates",
                     engine=engine, log=logs / "docs-update-worker.log")
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handle = client.start_workflow("shop", "ann", workflow_id=f"shop-{uuid.uuid4().hex}",
                                           task_queue="docs-updates")
            assert wait_for(lambda: _result_once_connected(handle, "add", "tea"),
                            timeout=30) == 1
            with pytest.raises(sdk.SchedAPIError) as rejected:
                handle.execute_update("add", "tea")
            assert rejected.value.code == "update_rejected"
            assert handle.execute_update("add", "cup", update_id="add-cup") == 2
            assert handle.execute_update("add", "cup", update_id="add-cup") == 2
            assert handle.execute_update("checkout") == "ann paid 6"
            assert handle.result(timeout=30) == {"owner": "ann", "items": ["tea", "cup"],
                                                 "paid": 6}
    finally:
        w.stop()


def _result_once_connected(handle: sdk.WorkflowHandle, name: str, *args: Any) -> Any:
    try:
        return handle.execute_update(name, *args, update_id="first")
    except sdk.SchedAPIError as err:
        if err.code == "no_worker":
            return None
        raise
