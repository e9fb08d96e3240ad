"""Eager workflow tasks (``workflows.services.tasks.eager_workflow_task``): a worker that caches
a run and has seen all of its history runs the run's next workflow task on an activity's
result and sends its commands with the completion. The engine records both in one transition
when the run is as the worker saw it, and otherwise the completion alone, the task then going
the usual way. Completions of a worker that takes them carry the events they appended
(``Outcome.ack_events``), and the run's next task for it starts after them."""

from __future__ import annotations

import dataclasses
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from dispatch.models import Task, TaskKind
from workflows.core.events import EventType
from workflows.models import Execution
from workflows.services import (
    Lessee,
    Outcome,
    activity_task_complete,
    workflow_signal,
    workflow_start,
    workflow_task_complete,
)

from .conftest import (
    QUEUE,
    WORKFLOW,
    Worker,
    activity,
    assert_consistent,
    event_types,
    history,
    refresh,
    register,
    workflow_task,
)

E = EventType
pytestmark = pytest.mark.django_db


def eager_lessee(worker: Worker) -> Lessee:
    return dataclasses.replace(worker.lessee(), takes_events=True)


def first_activity(worker: Worker, workflow_id: str = "wf") -> tuple[Execution, str, Outcome]:
    """A run whose first workflow task scheduled activity 1, completed by ``worker`` taking
    events; the activity's token and the completion's outcome."""
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, input=1,
                         workflow_id=workflow_id)
    msg = workflow_task(run)
    outcome = workflow_task_complete(token=msg["token"], commands=[activity(1)],
                                     worker_id=worker.worker_id, lessee=eager_lessee(worker))
    [act] = [d for d in outcome.deliveries if d["type"] == "activity_task"]
    return run, act["token"], outcome


def proposal(first: int, commands: list[dict[str, Any]], *,
             started_at: datetime | None = None) -> dict[str, Any]:
    return {"first_event_id": first, "started_at": (started_at or timezone.now()).isoformat(),
            "commands": commands}


def test_the_ack_of_a_completion_carries_its_events(worker: Worker) -> None:
    run, _token, outcome = first_activity(worker)
    assert outcome.ack_events is not None
    assert [(e["event_id"], e["event_type"]) for e in outcome.ack_events] == [
        (4, E.WORKFLOW_TASK_COMPLETED.value), (5, E.ACTIVITY_TASK_SCHEDULED.value)]
    assert refresh(run).sticky_next_event_id == 6  # the next task starts after them


def test_a_worker_that_does_not_take_events_gets_none(worker: Worker) -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, input=1, workflow_id="wf")
    msg = workflow_task(run)
    outcome = workflow_task_complete(token=msg["token"], commands=[activity(1)],
                                     worker_id=worker.worker_id, lessee=worker.lessee())
    assert outcome.ack_events is None
    assert refresh(run).sticky_next_event_id == 4  # after its WorkflowTaskStarted, as before


def test_an_eager_task_is_recorded_with_the_completion(worker: Worker) -> None:
    run, token, _ = first_activity(worker)
    started_at = timezone.now()
    outcome = activity_task_complete(
        token=token, result={"paid": True}, worker_id=worker.worker_id,
        lessee=eager_lessee(worker), workflow_task=proposal(6, [activity(2, "ship")],
                                                           started_at=started_at))
    assert event_types(run)[5:] == [
        E.ACTIVITY_TASK_STARTED, E.ACTIVITY_TASK_COMPLETED, E.WORKFLOW_TASK_SCHEDULED,
        E.WORKFLOW_TASK_STARTED, E.WORKFLOW_TASK_COMPLETED, E.ACTIVITY_TASK_SCHEDULED]
    events = history(run)
    assert events[6].attributes["result"] == {"paid": True}
    # The workflow's time during the task is the task's start the worker ran it at.
    assert {e.timestamp for e in events[5:]} == {started_at}
    assert events[9].attributes["worker"] == worker.worker_id
    assert [e["event_id"] for e in outcome.ack_events or []] == [10, 11]
    # The new activity went to the worker; no workflow task is left behind.
    assert [d["activity_type"] for d in outcome.deliveries] == ["ship"]
    assert not Task.objects.filter(execution=run, kind=TaskKind.WORKFLOW).exists()
    assert refresh(run).sticky_next_event_id == 12
    assert_consistent(run)

    [ship] = outcome.deliveries
    closing = activity_task_complete(
        token=ship["token"], result="shipped", worker_id=worker.worker_id,
        lessee=eager_lessee(worker),
        workflow_task=proposal(12, [{"kind": "complete_workflow", "result": "done"}]))
    run = refresh(run)
    assert run.status == "completed" and run.result == "done"
    assert event_types(run)[-2:] == [E.WORKFLOW_TASK_COMPLETED, E.WORKFLOW_EXECUTION_COMPLETED]
    assert closing.ack_events is None and closing.deliveries == []
    assert closing.cancels == []  # its own activity is not told to stop
    assert_consistent(run)


def test_news_before_the_completion_sends_the_task_the_usual_way(worker: Worker) -> None:
    run, token, _ = first_activity(worker)
    workflow_signal(workflow_id="wf", name="hurry", input=None)  # event 6, and a task
    outcome = activity_task_complete(
        token=token, result=1, worker_id=worker.worker_id, lessee=eager_lessee(worker),
        workflow_task=proposal(6, [activity(2)]))
    types = event_types(run)
    assert types[5:] == [E.WORKFLOW_EXECUTION_SIGNALED, E.WORKFLOW_TASK_SCHEDULED,
                         E.ACTIVITY_TASK_STARTED, E.ACTIVITY_TASK_COMPLETED]
    assert E.ACTIVITY_TASK_SCHEDULED not in types[7:]  # the proposal's command was not taken
    assert outcome.ack_events is None
    assert_consistent(run)


@pytest.mark.parametrize("change", [
    "next_event_id", "started_before_the_lease", "started_in_the_future", "child_workflow",
    "invalid_command", "malformed"])
def test_a_proposal_that_does_not_fit_leaves_the_completion_alone(worker: Worker,
                                                                    change: str) -> None:
    run, token, _ = first_activity(worker)
    leased_at = Task.objects.get(token=token).leased_at
    assert leased_at is not None
    offer: dict[str, Any] = proposal(6, [activity(2)])
    if change == "next_event_id":
        offer["first_event_id"] = 5
    elif change == "started_before_the_lease":
        offer["started_at"] = (leased_at - timedelta(seconds=1)).isoformat()
    elif change == "started_in_the_future":
        offer["started_at"] = (timezone.now() + timedelta(minutes=5)).isoformat()
    elif change == "child_workflow":
        offer["commands"] = [{"kind": "start_child_workflow", "seq": 2,
                              "workflow_type": WORKFLOW, "workflow_id": "child"}]
    elif change == "invalid_command":
        offer["commands"] = [{"kind": "no_such_command"}]
    else:
        offer = {"first_event_id": "six"}
    outcome = activity_task_complete(token=token, result=1, worker_id=worker.worker_id,
                                     lessee=eager_lessee(worker), workflow_task=offer)
    assert event_types(run)[5:] == [E.ACTIVITY_TASK_STARTED, E.ACTIVITY_TASK_COMPLETED,
                                    E.WORKFLOW_TASK_SCHEDULED, E.WORKFLOW_TASK_STARTED]
    # The task went to the worker as usual, starting after the events its ack carried.
    [task] = [d for d in outcome.deliveries if d["type"] == "workflow_task"]
    assert task["first_event_id"] == 6
    assert [e["event_id"] for e in task["events"]] == [6, 7, 8, 9]
    assert outcome.ack_events is None
    assert_consistent(run)


def test_another_worker_cannot_complete_the_task_eagerly(worker: Worker) -> None:
    run, token, _ = first_activity(worker)
    other = register("w2")
    Task.objects.filter(token=token).update(lease_owner=other.worker_id)
    activity_task_complete(token=token, result=1, worker_id=other.worker_id,
                           lessee=eager_lessee(other), workflow_task=proposal(6, [activity(2)]))
    assert event_types(run)[5:] == [E.ACTIVITY_TASK_STARTED, E.ACTIVITY_TASK_COMPLETED,
                                    E.WORKFLOW_TASK_SCHEDULED]  # not sticky to w2: dispatched
    assert_consistent(run)


def test_the_workflow_s_time_never_goes_back(worker: Worker) -> None:
    """Two activities leased together; the first's result goes the usual way and its task
    runs; the second's eager task, stamped before that task started (a worker clock behind
    the engine's), is refused: the workflow's time would go back."""
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, input=1, workflow_id="wf")
    msg = workflow_task(run)
    lessee = eager_lessee(worker)
    outcome = workflow_task_complete(token=msg["token"], commands=[activity(1), activity(2)],
                                     worker_id=worker.worker_id, lessee=lessee)
    first, second = (d["token"] for d in outcome.deliveries)
    stamped = timezone.now()  # the second's worker stamps its task now...
    plain = activity_task_complete(token=first, result=1, worker_id=worker.worker_id,
                                   lessee=eager_lessee(worker))
    [task] = [d for d in plain.deliveries if d["type"] == "workflow_task"]
    done = workflow_task_complete(token=task["token"], commands=[],
                                  worker_id=worker.worker_id, lessee=eager_lessee(worker))
    assert done.ack_events is not None  # ...and its copy is current, but its clock is behind
    before = len(history(run))
    activity_task_complete(token=second, result=2, worker_id=worker.worker_id,
                           lessee=eager_lessee(worker),
                           workflow_task=proposal(before + 1, [], started_at=stamped))
    started = [e.timestamp for e in history(run) if e.event_type is E.WORKFLOW_TASK_STARTED]
    assert started == sorted(started)
    assert event_types(run)[before:] == [E.ACTIVITY_TASK_STARTED, E.ACTIVITY_TASK_COMPLETED,
                                         E.WORKFLOW_TASK_SCHEDULED, E.WORKFLOW_TASK_STARTED]
    assert_consistent(run)


def test_a_worker_that_takes_no_events_gets_no_eager_task(worker: Worker) -> None:
    """Without the events on its acks a worker cannot know the run's history: its proposal is
    left alone."""
    run, token, _ = first_activity(worker)
    activity_task_complete(token=token, result=1, worker_id=worker.worker_id,
                           lessee=worker.lessee(), workflow_task=proposal(6, [activity(2)]))
    assert event_types(run)[5:] == [E.ACTIVITY_TASK_STARTED, E.ACTIVITY_TASK_COMPLETED,
                                    E.WORKFLOW_TASK_SCHEDULED, E.WORKFLOW_TASK_STARTED]
    assert_consistent(run)
