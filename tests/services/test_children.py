"""Child workflows through the transition services: a parent's start, its children's ends,
its close policy and its signals, each written in one transaction."""

from __future__ import annotations

from typing import Any

import pytest

from timers.models import Timer, TimerKind
from workflows.core.events import EventType
from workflows.models import Execution
from workflows.services import (
    get_run,
    workflow_start,
    workflow_task_complete,
    workflow_terminate,
)

from .conftest import (
    QUEUE,
    WORKFLOW,
    Worker,
    assert_consistent,
    event_types,
    fire,
    history,
    refresh,
    tick,
    workflow_task,
)

E = EventType
pytestmark = pytest.mark.django_db


def start(workflow_id: str) -> Execution:
    return workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, input=None,
                          workflow_id=workflow_id)


_taken: dict[str, dict[str, Any]] = {}


def complete(worker: Worker, run: Execution, commands: list[dict[str, Any]]) -> Any:
    """Complete the run's workflow task (one dispatch tick leases every ready task: those of
    other runs are kept for their turn)."""
    msg = _taken.pop(str(run.run_id), None)
    if msg is None:
        for _, m in tick():
            if m["type"] == "workflow_task":
                _taken[m["run_id"]] = m
        msg = _taken.pop(str(run.run_id), None) or workflow_task(run)
    return workflow_task_complete(token=msg["token"], commands=commands,
                                  worker_id=worker.worker_id)


@pytest.fixture(autouse=True)
def _forget_tasks() -> None:
    _taken.clear()


def child(seq: int, workflow_id: str, policy: str = "terminate") -> dict[str, Any]:
    return {"kind": "start_child_workflow", "seq": seq, "workflow_type": WORKFLOW,
            "workflow_id": workflow_id, "input": {"n": seq}, "parent_close_policy": policy}


def last(run: Execution) -> Any:
    return history(run)[-1]


def with_child(worker: Worker, policy: str = "terminate") -> tuple[Execution, Execution]:
    parent = start("parent")
    complete(worker, parent, [child(1, "kid", policy)])
    return parent, get_run("kid")


def test_a_started_child_is_recorded_in_the_parent_in_the_same_transaction(
        worker: Worker) -> None:
    parent, kid = with_child(worker)
    assert event_types(parent)[-4:] == [
        E.WORKFLOW_TASK_COMPLETED, E.START_CHILD_WORKFLOW_EXECUTION_INITIATED,
        E.CHILD_WORKFLOW_EXECUTION_STARTED, E.WORKFLOW_TASK_SCHEDULED]
    started = history(parent)[-2].attributes
    assert started["run_id"] == str(kid.run_id) and started["workflow_id"] == "kid"
    assert kid.parent_id == parent.pk and kid.input == {"n": 1}
    assert history(kid)[0].attributes["parent"] == {"workflow_id": "parent",
                                                    "run_id": str(parent.run_id)}
    state = assert_consistent(parent)
    assert state.children[1].run_id == str(kid.run_id)
    assert_consistent(kid)


@pytest.mark.parametrize(("command", "outcome", "key", "value"), [
    ({"kind": "complete_workflow", "result": {"ok": 1}}, E.CHILD_WORKFLOW_EXECUTION_COMPLETED,
     "result", {"ok": 1}),
    ({"kind": "fail_workflow", "failure": {"type": "Boom", "message": "no"}},
     E.CHILD_WORKFLOW_EXECUTION_FAILED, "failure", "Boom"),
])
def test_the_childs_close_reaches_its_parent(worker: Worker, command: dict[str, Any],
                                             outcome: EventType, key: str, value: Any) -> None:
    parent, kid = with_child(worker)
    complete(worker, parent, [])  # the parent waits
    complete(worker, kid, [command])
    closing = history(parent)[-2]
    assert closing.event_type is outcome and history(parent)[-1].event_type is (
        E.WORKFLOW_TASK_SCHEDULED)
    got = closing.attributes[key]
    assert (got["type"] if key == "failure" else got) == value
    assert closing.attributes["seq"] == 1 and closing.attributes["run_id"] == str(kid.run_id)
    assert assert_consistent(parent).children == {}
    assert_consistent(kid)


def test_a_child_workflow_id_with_an_open_run_fails_the_start_only(worker: Worker) -> None:
    other = start("kid")
    parent = start("parent")
    complete(worker, parent, [child(1, "kid"), child(2, "kid2"), child(3, "kid2")])
    types = event_types(parent)
    assert types.count(E.START_CHILD_WORKFLOW_EXECUTION_FAILED) == 2
    assert types.count(E.CHILD_WORKFLOW_EXECUTION_STARTED) == 1
    failed = [e.attributes for e in history(parent)
              if e.event_type is E.START_CHILD_WORKFLOW_EXECUTION_FAILED]
    assert [(f["seq"], f["cause"]) for f in failed] == [(1, "workflow_already_started"),
                                                        (3, "workflow_already_started")]
    assert refresh(other).parent_id is None and get_run("kid").pk == other.pk
    assert Execution.objects.filter(workflow_id="kid2").count() == 1
    assert_consistent(parent)


def test_terminating_the_parent_terminates_a_terminate_child_and_leaves_an_abandon_one(
        worker: Worker) -> None:
    parent = start("parent")
    complete(worker, parent, [child(1, "doomed"), child(2, "free", "abandon")])
    workflow_terminate(workflow_id="parent", reason="enough")
    doomed, free = get_run("doomed"), get_run("free")
    assert not Timer.objects.filter(execution=free).exists()
    fire(doomed, TimerKind.PARENT_CLOSE_POLICY)
    assert refresh(doomed).status == "terminated"
    assert "parent_close_policy=terminate" in last(doomed).attributes["reason"]
    assert refresh(free).status == "running"
    assert last(parent).event_type is E.WORKFLOW_EXECUTION_TERMINATED  # nothing after close
    for run in (parent, doomed, free):
        assert_consistent(run)


def test_request_cancel_policy_asks_the_child_to_cancel(worker: Worker) -> None:
    parent, kid = with_child(worker, "request_cancel")
    complete(worker, parent, [{"kind": "complete_workflow", "result": 1}])
    fire(kid, TimerKind.PARENT_CLOSE_POLICY)
    assert E.WORKFLOW_EXECUTION_CANCEL_REQUESTED in event_types(kid)
    assert refresh(kid).status == "running"


def test_a_child_started_by_the_task_that_closes_the_parent_gets_the_policy_at_once(
        worker: Worker) -> None:
    parent = start("parent")
    complete(worker, parent, [child(1, "kid"), child(2, "stays", "abandon"),
                              {"kind": "complete_workflow", "result": 1}])
    assert event_types(parent)[-4:] == [
        E.WORKFLOW_TASK_COMPLETED, E.START_CHILD_WORKFLOW_EXECUTION_INITIATED,
        E.START_CHILD_WORKFLOW_EXECUTION_INITIATED, E.WORKFLOW_EXECUTION_COMPLETED]
    kid = get_run("kid")
    fire(kid, TimerKind.PARENT_CLOSE_POLICY)
    assert refresh(kid).status == "terminated"
    assert get_run("stays").status == "running"
    assert_consistent(parent)


def test_a_child_that_continues_as_new_reaches_its_parent_from_its_last_run(
        worker: Worker) -> None:
    parent, kid = with_child(worker)
    complete(worker, parent, [])
    complete(worker, kid, [{"kind": "continue_as_new", "input": 2}])
    assert last(parent).event_type is E.WORKFLOW_TASK_COMPLETED  # not an end for the parent
    second = get_run("kid")
    assert second.pk != kid.pk and second.parent_id == parent.pk
    complete(worker, second, [{"kind": "complete_workflow", "result": "done"}])
    closing = history(parent)[-2]
    assert closing.event_type is E.CHILD_WORKFLOW_EXECUTION_COMPLETED
    assert closing.attributes["run_id"] == str(second.run_id)
    assert closing.attributes["result"] == "done"
    assert_consistent(parent)


def test_a_parent_signals_its_child_through_the_childs_transaction(worker: Worker) -> None:
    parent, kid = with_child(worker)
    complete(worker, parent, [{"kind": "signal_external_workflow", "seq": 2,
                               "workflow_id": "kid", "signal_name": "go", "input": [1]}])
    assert last(parent).event_type is E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED
    fire(kid, TimerKind.CHILD_SIGNAL)
    signaled = [e for e in history(kid) if e.event_type is E.WORKFLOW_EXECUTION_SIGNALED]
    assert [(e.attributes["signal_name"], e.attributes["input"]) for e in signaled] == [
        ("go", [1])]
    answer = history(parent)[-2]
    assert answer.event_type is E.EXTERNAL_WORKFLOW_EXECUTION_SIGNALED
    assert answer.attributes["run_id"] == str(kid.run_id)
    assert_consistent(parent)
    assert_consistent(kid)


def test_a_signal_to_a_workflow_that_is_not_a_child_fails_at_once(worker: Worker) -> None:
    start("stranger")
    parent = start("parent")
    complete(worker, parent, [{"kind": "signal_external_workflow", "seq": 1,
                               "workflow_id": "stranger", "signal_name": "go"}])
    failed = history(parent)[-2]
    assert failed.event_type is E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED
    assert failed.attributes["cause"] == "workflow_not_found"
    assert not Timer.objects.filter(kind=TimerKind.CHILD_SIGNAL).exists()


def test_a_signal_pending_when_the_child_closes_fails(worker: Worker) -> None:
    parent, kid = with_child(worker)
    complete(worker, parent, [{"kind": "signal_external_workflow", "seq": 2,
                               "workflow_id": "kid", "signal_name": "go"}])
    complete(worker, kid, [{"kind": "complete_workflow", "result": 1}])
    types = event_types(parent)
    assert types[-3:] == [E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED,
                          E.CHILD_WORKFLOW_EXECUTION_COMPLETED, E.WORKFLOW_TASK_SCHEDULED]
    timer = Timer.objects.get(kind=TimerKind.CHILD_SIGNAL)  # kept past the close, harmless
    fire(kid, TimerKind.CHILD_SIGNAL)
    assert event_types(parent) == types and not Timer.objects.filter(pk=timer.pk).exists()


def test_a_parent_asks_its_child_to_cancel(worker: Worker) -> None:
    parent, kid = with_child(worker)
    complete(worker, parent, [{"kind": "request_cancel_external_workflow", "seq": 2,
                               "workflow_id": "kid"}])
    fire(kid, TimerKind.CHILD_CANCEL)
    assert E.WORKFLOW_EXECUTION_CANCEL_REQUESTED in event_types(kid)
    complete(worker, kid, [{"kind": "cancel_workflow"}])  # taken before the request: again
    assert refresh(kid).status == "running"
    complete(worker, kid, [{"kind": "cancel_workflow"}])
    assert history(parent)[-2].event_type is E.CHILD_WORKFLOW_EXECUTION_CANCELED
