"""Child workflows and continue-as-new, run by a real engine and a real worker process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import sdk

from .harness import Engine, Proc, Stack, wait_for

QUEUE = "children"


@pytest.fixture(scope="module", autouse=True)
def children_worker(stack: Stack, engine: Engine, logs: Path) -> Iterator[Proc]:
    """A worker of this module's workflows, on their own task queue."""
    w = stack.worker("tests.e2e.e2e_children", task_queue=QUEUE, engine=engine,
                     log=logs / "children-worker.log")
    yield w
    w.stop()


def start(client: sdk.Client, workflow: str, input: object = None) -> sdk.WorkflowHandle:
    return client.start_workflow(workflow, input, task_queue=QUEUE,
                                 workflow_id=f"{workflow}-{uuid.uuid4().hex[:8]}")


def types(handle: sdk.WorkflowHandle) -> list[str]:
    return [e["event_type"] for e in handle.history()]


def test_a_parent_runs_a_child_and_gets_its_result(client: sdk.Client) -> None:
    handle = start(client, "parent", 21)
    assert handle.result(timeout=60) == {"doubled": 42, "parent": handle.workflow_id}
    assert types(handle).count("ChildWorkflowExecutionCompleted") == 1
    child = client.get_workflow_handle(f"{handle.workflow_id}-kid").describe()
    assert child["status"] == "completed"
    assert child["parent"]["workflow_id"] == handle.workflow_id


def test_a_childs_failure_reaches_the_parent_as_child_workflow_error(
        client: sdk.Client) -> None:
    handle = start(client, "parent_of_broken")
    assert handle.result(timeout=60) == {"status": "failed", "cause": "KidBroke",
                                         "message": "the kid broke"}


def test_terminating_the_parent_terminates_one_child_and_leaves_the_abandoned(
        client: sdk.Client) -> None:
    ids = [f"doomed-{uuid.uuid4().hex[:8]}", f"free-{uuid.uuid4().hex[:8]}"]
    handle = start(client, "parent_of_two", ids)
    doomed, free = (client.get_workflow_handle(i) for i in ids)
    wait_for(lambda: types(handle).count("ChildWorkflowExecutionStarted") == 2, timeout=60)
    handle.terminate("enough")
    wait_for(lambda: doomed.describe()["status"] == "terminated", timeout=60)
    assert free.describe()["status"] == "running"
    free.signal("hello", "still here")
    assert free.result(timeout=60) == {"heard": "still here"}
    assert types(handle)[-1] == "WorkflowExecutionTerminated"


def test_a_parent_signals_its_child(client: sdk.Client) -> None:
    handle = start(client, "parent_signals")
    result = handle.result(timeout=60)
    assert result["child"] == {"heard": {"from": handle.workflow_id}}
    assert "ExternalWorkflowExecutionSignaled" in types(handle)


def test_a_workflow_continued_as_new_three_times_gives_its_last_runs_result(
        stack: Stack, engine: Engine, client: sdk.Client) -> None:
    handle = start(client, "rolling", 0)
    result = handle.result(timeout=60)
    assert result["n"] == 3 and result["continued_from"]
    last = client.get_workflow_handle(handle.workflow_id).describe()
    assert last["run_id"] != handle.run_id and last["status"] == "completed"
    # The REST result of the first run follows the chain too (lean path and Django alike).
    first_run = {"run_id": handle.run_id, "wait": "5"}
    with httpx.Client(base_url=engine.url, timeout=30,
                      headers={"Authorization": f"Bearer {stack.token}"}) as http:
        answer = http.get(f"/api/workflows/{handle.workflow_id}/result", params=first_run)
        assert answer.status_code == 200
        assert answer.json()["status"] == "completed"
        assert answer.json()["result"] == result
        assert answer.json()["run_id"] == last["run_id"]


def test_a_result_request_waiting_on_the_first_run_answers_for_the_last(
        stack: Stack, engine: Engine, client: sdk.Client) -> None:
    handle = start(client, "rolling_slowly", 0)
    with httpx.Client(base_url=engine.url, timeout=90,
                      headers={"Authorization": f"Bearer {stack.token}"}) as http:
        answer = http.get(f"/api/workflows/{handle.workflow_id}/result",
                          params={"run_id": handle.run_id, "wait": "60"})
    assert answer.status_code == 200
    body = answer.json()
    assert (body["status"], body["result"]) == ("completed", {"n": 2})
    assert body["run_id"] != handle.run_id


def test_a_child_with_a_retry_policy_fails_twice_and_the_parent_gets_its_third_runs_result(
        client: sdk.Client) -> None:
    handle = start(client, "parent_of_flaky", 7)
    assert handle.result(timeout=60) == {"tripled": 21, "attempt": 3}
    parent_events = types(handle)
    assert parent_events.count("ChildWorkflowExecutionCompleted") == 1
    assert "ChildWorkflowExecutionFailed" not in parent_events
    child_id = f"{handle.workflow_id}-flaky"
    runs = list(client.list_workflows(query={"workflow_id": child_id}))
    assert sorted(run["status"] for run in runs) == ["completed", "failed", "failed"]
    [started] = [e for e in handle.history()
                 if e["event_type"] == "ChildWorkflowExecutionStarted"]
    first_run = client.get_workflow_handle(child_id, run_id=started["attributes"]["run_id"])
    assert first_run.describe()["status"] == "failed"
    # Like a continue-as-new chain, the first run's result is the last retry's.
    assert first_run.result(timeout=60) == {"tripled": 21, "attempt": 3}


def test_a_child_that_fails_its_last_attempt_fails_the_parents_call(
        client: sdk.Client) -> None:
    handle = start(client, "parent_of_too_flaky")
    assert handle.result(timeout=60) == {"status": "failed", "message": "run 2 fails"}
    assert types(handle).count("ChildWorkflowExecutionFailed") == 1


def test_a_child_run_that_times_out_is_retried(client: sdk.Client) -> None:
    handle = start(client, "parent_of_slow")
    assert handle.result(timeout=90) == {"attempt": 2}
    runs = list(client.list_workflows(query={"workflow_id": f"{handle.workflow_id}-slow"}))
    assert sorted(run["status"] for run in runs) == ["completed", "timed_out"]
