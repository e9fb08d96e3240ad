"""Start options: ``id_conflict_policy`` ("fail" / "use_existing") and signal-with-start
(``start_signal``), alone, with request ids, handed off to a worker, and in a batch."""

from __future__ import annotations

from typing import Any

import pytest

from dispatch.models import Task, TaskKind, TaskState
from workflows.core.events import EventType
from workflows.errors import Conflict, InvalidInput
from workflows.models import Execution, HistoryEvent
from workflows.services import (
    Outcome,
    StartRequest,
    workflow_signal,
    workflow_start_handing_off,
    workflow_start_many,
    workflow_terminate,
)

from .conftest import (
    QUEUE,
    WORKFLOW,
    Worker,
    assert_consistent,
    count_events,
    event_types,
    history,
    messages,
    refresh,
    tick,
    workflow_task,
)

E = EventType
pytestmark = pytest.mark.django_db


def start(**options: Any) -> Outcome:
    options.setdefault("workflow_type", WORKFLOW)
    options.setdefault("task_queue", QUEUE)
    options.setdefault("workflow_id", "wf")
    return workflow_start_handing_off(lessee=None, **options)


def signals(run: Execution) -> list[tuple[str, Any]]:
    return [(e.attributes["signal_name"], e.attributes["input"]) for e in history(run)
            if e.event_type is E.WORKFLOW_EXECUTION_SIGNALED]


# ---- id_conflict_policy ---------------------------------------------------------------------


def test_a_start_reports_that_it_started_the_run() -> None:
    outcome = start()
    assert outcome.started is True
    assert event_types(outcome.execution) == [E.WORKFLOW_EXECUTION_STARTED,
                                              E.WORKFLOW_TASK_SCHEDULED]


@pytest.mark.parametrize("policy", [None, "fail"])
def test_fail_refuses_an_open_workflow_id_naming_its_run(policy: str | None) -> None:
    first = start().execution
    with pytest.raises(Conflict) as refused:
        start(id_conflict_policy=policy)
    assert refused.value.code == "workflow_already_started"
    assert refused.value.extra["run_id"] == str(first.run_id)
    assert Execution.objects.count() == 1


def test_use_existing_answers_with_the_open_run_and_writes_nothing() -> None:
    first = start(input=1).execution
    events = count_events()
    again = start(input=2, id_conflict_policy="use_existing")
    assert again.started is False
    assert again.execution.run_id == first.run_id
    assert again.events == [] and again.deliveries == []
    assert count_events() == events
    assert refresh(first).input == 1
    assert_consistent(first)


def test_use_existing_starts_a_run_when_none_is_open() -> None:
    outcome = start(id_conflict_policy="use_existing")
    assert outcome.started is True
    first = outcome.execution
    workflow_terminate(workflow_id="wf")
    again = start(id_conflict_policy="use_existing")
    assert again.started is True and again.execution.run_id != first.run_id
    assert Execution.objects.filter(workflow_id="wf").count() == 2


@pytest.mark.parametrize(("change", "code"), [
    ({"workflow_type": "Invoice"}, "workflow_type_mismatch"),
    ({"task_queue": "elsewhere"}, "task_queue_mismatch"),
])
def test_use_existing_refuses_an_open_run_of_another_type_or_queue(
        change: dict[str, str], code: str) -> None:
    first = start().execution
    events = count_events()
    with pytest.raises(Conflict) as refused:
        start(id_conflict_policy="use_existing", **change)
    assert refused.value.code == code
    assert refused.value.extra["run_id"] == str(first.run_id)
    field, theirs = next(iter(change)), getattr(first, next(iter(change)))
    assert refused.value.extra[field] == theirs
    assert repr(theirs) in refused.value.message
    assert count_events() == events


def test_an_unknown_policy_is_invalid_input() -> None:
    with pytest.raises(InvalidInput):
        start(id_conflict_policy="terminate_existing")
    assert Execution.objects.count() == 0


# ---- signal-with-start ------------------------------------------------------------------------


def test_signal_with_start_records_the_signal_right_after_the_start(worker: Worker) -> None:
    outcome = start(input={"n": 1}, start_signal="go", start_signal_input={"by": "ada"})
    run = outcome.execution
    assert outcome.started is True
    assert event_types(run) == [E.WORKFLOW_EXECUTION_STARTED, E.WORKFLOW_EXECUTION_SIGNALED,
                                E.WORKFLOW_TASK_SCHEDULED]
    assert signals(run) == [("go", {"by": "ada"})]
    # The run's first workflow task carries the signal.
    msg = workflow_task(run)
    assert [e["event_type"] for e in msg["events"]] == [
        "WorkflowExecutionStarted", "WorkflowExecutionSignaled", "WorkflowTaskScheduled",
        "WorkflowTaskStarted"]
    assert_consistent(run)


def test_signal_with_start_signals_an_open_run(worker: Worker) -> None:
    first = start().execution
    workflow_task(first)  # its first task is running: the signal asks for another
    outcome = start(input="ignored", start_signal="go", start_signal_input=7)
    assert outcome.started is False
    assert outcome.execution.run_id == first.run_id
    assert [e.event_type for e in outcome.events] == [E.WORKFLOW_EXECUTION_SIGNALED]
    assert signals(first) == [("go", 7)]
    assert Execution.objects.count() == 1
    assert refresh(first).input is None
    assert_consistent(first)


def test_signal_with_start_starts_again_after_the_run_closed() -> None:
    first = start(start_signal="go").execution
    workflow_terminate(workflow_id="wf")
    outcome = start(start_signal="go", start_signal_input=2)
    assert outcome.started is True and outcome.execution.run_id != first.run_id
    assert signals(outcome.execution) == [("go", 2)]


def test_signal_with_start_refuses_an_open_run_of_another_type() -> None:
    first = start().execution
    with pytest.raises(Conflict) as refused:
        start(workflow_type="Invoice", start_signal="go")
    assert refused.value.code == "workflow_type_mismatch"
    assert signals(first) == []


def test_signal_with_start_cannot_fail_on_an_open_run() -> None:
    with pytest.raises(InvalidInput):
        start(start_signal="go", id_conflict_policy="fail")
    assert Execution.objects.count() == 0


def test_signal_with_start_hands_the_first_task_with_its_signal_to_a_lessee(
        worker: Worker) -> None:
    outcome = workflow_start_handing_off(workflow_type=WORKFLOW, task_queue=QUEUE,
                                         workflow_id="wf", start_signal="go",
                                         start_signal_input=1, lessee=worker.lessee())
    [wt] = outcome.deliveries
    assert [e["event_type"] for e in wt["events"]] == [
        "WorkflowExecutionStarted", "WorkflowExecutionSignaled", "WorkflowTaskScheduled",
        "WorkflowTaskStarted"]
    task = Task.objects.get(execution=outcome.execution, kind=TaskKind.WORKFLOW)
    assert task.state == TaskState.LEASED and task.lease_owner == worker.worker_id
    assert tick() == []
    assert_consistent(outcome.execution)


def test_signalling_an_open_run_hands_nothing_to_the_lessee(worker: Worker) -> None:
    first = start().execution
    outcome = workflow_start_handing_off(workflow_type=WORKFLOW, task_queue=QUEUE,
                                         workflow_id="wf", start_signal="go",
                                         lessee=worker.lessee())
    assert outcome.started is False and outcome.deliveries == []
    assert messages(tick(), "workflow_task", first) != []  # the dispatcher delivers it


# ---- request ids -------------------------------------------------------------------------------


def test_a_retried_use_existing_gets_the_first_answer_even_after_the_run_closed() -> None:
    first = start().execution
    answer = start(id_conflict_policy="use_existing", request_id="r-1")
    assert answer.started is False
    workflow_terminate(workflow_id="wf")
    again = start(id_conflict_policy="use_existing", request_id="r-1")
    assert (again.started, again.execution.run_id) == (False, first.run_id)
    assert Execution.objects.count() == 1  # the retry did not start a new run


def test_a_retried_signal_with_start_signals_once() -> None:
    started = start(start_signal="go", start_signal_input=1, request_id="s-1")
    again = start(start_signal="go", start_signal_input=1, request_id="s-1")
    assert started.started is True and again.started is True
    assert again.execution.run_id == started.execution.run_id and again.events == []
    signalled = start(start_signal="go", start_signal_input=2, request_id="s-2")
    retried = start(start_signal="go", start_signal_input=2, request_id="s-2")
    assert signalled.started is False and retried.started is False
    assert signals(started.execution) == [("go", 1), ("go", 2)]


def test_a_start_request_id_cannot_be_reused_by_a_signal_nor_the_other_way() -> None:
    start(start_signal="go", request_id="once")
    with pytest.raises(Conflict) as refused:
        workflow_signal(workflow_id="wf", name="go", request_id="once")
    assert refused.value.code == "request_id_reused"
    workflow_signal(workflow_id="wf", name="go", request_id="sig")
    with pytest.raises(Conflict) as refused:
        start(start_signal="go", request_id="sig")
    assert refused.value.code == "request_id_reused"
    assert len(signals(Execution.objects.get())) == 2


# ---- a batch -----------------------------------------------------------------------------------


def test_a_batch_takes_the_options_item_by_item() -> None:
    start(workflow_id="open")
    answers = workflow_start_many(starts=[
        StartRequest(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="open",
                     id_conflict_policy="use_existing"),
        StartRequest(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="open"),
        StartRequest(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="new",
                     start_signal="go", start_signal_input=1),
        StartRequest(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="new",
                     start_signal="go", start_signal_input=2),
        StartRequest(workflow_type="Invoice", task_queue=QUEUE, workflow_id="new",
                     id_conflict_policy="use_existing"),
    ])
    used, refused, started, signalled, mismatch = answers
    assert isinstance(used, Outcome) and used.started is False
    assert isinstance(refused, Conflict) and refused.code == "workflow_already_started"
    assert isinstance(started, Outcome) and started.started is True
    assert isinstance(signalled, Outcome) and signalled.started is False
    assert signalled.execution.run_id == started.execution.run_id
    assert isinstance(mismatch, Conflict) and mismatch.code == "workflow_type_mismatch"
    run = Execution.objects.get(workflow_id="new")
    assert signals(run) == [("go", 1), ("go", 2)]
    assert HistoryEvent.objects.filter(execution__workflow_id="open").count() == 2
    assert_consistent(run)
