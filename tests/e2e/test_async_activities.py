"""Async activity completion and activity cancellation types, on a real engine and worker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

import sdk

from .harness import Engine, Proc, Stack, wait_for

MODULE = "tests.e2e.async_activity_workflows"
QUEUE = "async-activities"


@pytest.fixture(scope="module")
def token_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("tokens")


@pytest.fixture(scope="module")
def async_worker(stack: Stack, engine: Engine, logs: Path, token_dir: Path) -> Iterator[Proc]:
    w = stack.worker(MODULE, task_queue=QUEUE, engine=engine, log=logs / "async-worker.log",
                     extra_env={"ASYNC_TOKEN_DIR": str(token_dir)})
    yield w
    w.stop()


@pytest.fixture
def client(stack: Stack, engine: Engine, async_worker: Proc) -> Iterator[sdk.Client]:
    with sdk.Client(engine.url, token=stack.token) as c:
        yield c


def start(client: sdk.Client, workflow: str, input: object = None) -> sdk.WorkflowHandle:
    return client.start_workflow(workflow, input, task_queue=QUEUE,
                                 workflow_id=f"{workflow}-{uuid.uuid4().hex}")


def token_of(token_dir: Path, handle: sdk.WorkflowHandle) -> str:
    path = token_dir / handle.workflow_id
    wait_for(lambda: path.exists() and path.read_text(), timeout=60)
    return path.read_text()


def test_outside_code_heartbeats_and_completes_the_activity(
        client: sdk.Client, token_dir: Path) -> None:
    handle = start(client, "paid_elsewhere")
    activity = client.get_async_activity_handle(token_of(token_dir, handle))
    assert activity.heartbeat({"step": 1}) is False
    activity.complete({"paid": 12})
    assert handle.result(timeout=60) == {"result": {"paid": 12}}
    with pytest.raises(sdk.SchedAPIError) as stale:
        activity.complete({"paid": 13})
    assert (stale.value.status_code, stale.value.code) == (409, "stale_task")
    types = [e["event_type"] for e in handle.history()]
    assert types.count("ActivityTaskCompleted") == 1


def test_outside_code_fails_the_activity_with_its_error(
        client: sdk.Client, token_dir: Path) -> None:
    handle = start(client, "paid_elsewhere")
    activity = client.get_async_activity_handle(token_of(token_dir, handle))
    activity.fail(sdk.ApplicationError("card declined", type="Declined", non_retryable=True))
    assert handle.result(timeout=60) == {"timeout_type": None, "type": "Declined"}


def test_an_unknown_token_is_refused(client: sdk.Client) -> None:
    with pytest.raises(sdk.SchedAPIError) as unknown:
        client.get_async_activity_handle("424242424.abc").complete(1)
    assert (unknown.value.status_code, unknown.value.code) == (404, "activity_not_found")


def test_start_to_close_still_applies_to_an_async_activity(
        client: sdk.Client, token_dir: Path) -> None:
    handle = start(client, "paid_elsewhere", 2)
    token = token_of(token_dir, handle)
    assert handle.result(timeout=60) == {"timeout_type": "start_to_close",
                                             "type": "TimeoutError"}
    with pytest.raises(sdk.SchedAPIError) as late:
        client.get_async_activity_handle(token).complete(1)
    assert late.value.code == "stale_task"


def _order(handle: sdk.WorkflowHandle) -> list[str]:
    wanted = {"ActivityTaskCancelRequested", "ActivityTaskCanceled", "WorkflowExecutionCompleted"}
    return [e["event_type"] for e in handle.history() if e["event_type"] in wanted]


def test_wait_cancellation_completed_waits_for_the_activity_to_stop(client: sdk.Client) -> None:
    handle = start(client, "cancels_its_activity", "wait_cancellation_completed")
    assert handle.result(timeout=60) == "canceled"
    assert _order(handle) == ["ActivityTaskCancelRequested", "ActivityTaskCanceled",
                              "WorkflowExecutionCompleted"]


def test_try_cancel_does_not_wait(client: sdk.Client) -> None:
    handle = start(client, "cancels_its_activity", "try_cancel")
    assert handle.result(timeout=60) == "canceled"
    assert _order(handle) == ["ActivityTaskCancelRequested", "WorkflowExecutionCompleted"]
