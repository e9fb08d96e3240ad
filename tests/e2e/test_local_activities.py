"""Local activities on a real engine and worker: one workflow task, markers in history."""

from __future__ import annotations

import uuid
from pathlib import Path

import sdk

from .conftest import MODULE
from .harness import Engine, Stack, wait_for


def test_three_local_activities_complete_in_one_workflow_task(client: sdk.Client) -> None:
    handle = client.start_workflow("local_steps", 4, workflow_id=f"local-{uuid.uuid4().hex}")
    assert handle.result(timeout=30) == {"a": 5, "b": 50, "c": 52}
    history = handle.history()
    types = [e["event_type"] for e in history]
    assert types.count("WorkflowTaskStarted") == 1
    assert types.count("WorkflowTaskCompleted") == 1
    i = types.index("WorkflowTaskCompleted")
    assert types[i:] == ["WorkflowTaskCompleted", "MarkerRecorded", "MarkerRecorded",
                         "MarkerRecorded", "WorkflowExecutionCompleted"]
    markers = [e["attributes"] for e in history if e["event_type"] == "MarkerRecorded"]
    assert [m["marker_name"] for m in markers] == ["local_activity"] * 3
    assert [m["data"] for m in markers] == [
        {"activity_type": "add", "attempts": 1, "result": 5},
        {"activity_type": "times", "attempts": 1, "result": 50},
        {"activity_type": "add", "attempts": 1, "result": 52},
    ]
    assert not any(t.startswith("Activity") for t in types)


def test_a_local_activity_fails_twice_then_succeeds(client: sdk.Client) -> None:
    handle = client.start_workflow("local_retries", 2, workflow_id=f"local-{uuid.uuid4().hex}")
    assert handle.result(timeout=30) == {"attempt": 3}
    history = handle.history()
    types = [e["event_type"] for e in history]
    assert types.count("WorkflowTaskCompleted") == 1
    [marker] = [e["attributes"] for e in history if e["event_type"] == "MarkerRecorded"]
    assert marker["data"] == {"activity_type": "flaky", "attempts": 3,
                              "result": {"attempt": 3}}
    assert types[-1] == "WorkflowExecutionCompleted"


def test_a_failed_local_activity_raises_activity_error(client: sdk.Client) -> None:
    handle = client.start_workflow("local_refused", workflow_id=f"local-{uuid.uuid4().hex}")
    assert handle.result(timeout=30) == {"type": "CardDeclined", "message": "card declined",
                                         "attempt": 1}
    [marker] = [e["attributes"] for e in handle.history() if e["event_type"] == "MarkerRecorded"]
    assert marker["data"]["failure"]["type"] == "CardDeclined"


def test_another_worker_replays_the_markers_without_running_them_again(
        stack: Stack, engine: Engine, client: sdk.Client, logs: Path) -> None:
    queue = "local-" + uuid.uuid4().hex[:6]  # only the workers below serve it
    first = stack.worker(MODULE, task_queue=queue, engine=engine, log=logs / "local-a.log",
                         extra_env={"E2E_WORKER_NAME": "a"})
    handle = client.start_workflow("local_then_signal", task_queue=queue)
    try:
        wait_for(lambda: "MarkerRecorded" in [e["event_type"] for e in handle.history()],
                 timeout=20)
    finally:
        first.stop()
    second = stack.worker(MODULE, task_queue=queue, engine=engine, log=logs / "local-b.log",
                          extra_env={"E2E_WORKER_NAME": "b"})
    try:
        handle.signal("go")
        assert handle.result(timeout=30) == {"first": "a", "second": "b"}
    finally:
        second.stop()
    markers = [e["attributes"]["data"] for e in handle.history()
               if e["event_type"] == "MarkerRecorded"]
    assert markers == [{"activity_type": "where", "attempts": 1, "result": "a"},
                       {"activity_type": "where", "attempts": 1, "result": "b"}]
