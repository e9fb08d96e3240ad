"""Whole runs driven through the transition services, as a worker and the loops drive them."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest

from dispatch.models import Task, TaskKind, TaskState
from timers.models import Timer, TimerKind
from workflows.core.events import EventType
from workflows.errors import Conflict, InvalidInput
from workflows.models import Execution
from workflows.services import (
    activity_task_complete,
    activity_task_fail,
    activity_task_heartbeat,
    get_run,
    workflow_request_cancel,
    workflow_signal,
    workflow_start,
    workflow_task_complete,
    workflow_task_fail,
    workflow_terminate,
)

from .conftest import (
    QUEUE,
    WORKFLOW,
    Worker,
    activity,
    activity_tasks,
    assert_consistent,
    count_events,
    event_types,
    fire,
    history,
    refresh,
    register,
    workflow_task,
)

E = EventType
pytestmark = pytest.mark.django_db


def start(workflow_id: str | None = None, **kwargs: Any) -> Execution:
    return workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, input={"order": 7},
                          workflow_id=workflow_id, **kwargs)


def complete(worker: Worker, run: Execution, commands: list[dict[str, Any]]) -> Any:
    msg = workflow_task(run)
    return workflow_task_complete(token=msg["token"], commands=commands,
                                  worker_id=worker.worker_id)


# ---- start ---------------------------------------------------------------------------------


def test_start_records_the_start_and_a_ready_workflow_task() -> None:
    run = start("order-1")
    assert event_types(run) == [E.WORKFLOW_EXECUTION_STARTED, E.WORKFLOW_TASK_SCHEDULED]
    started = history(run)[0].attributes
    assert (started["workflow_type"], started["task_queue"], started["input"]) == (
        WORKFLOW, QUEUE, {"order": 7})
    task = Task.objects.get(execution=run)
    assert (task.kind, task.state, task.scheduled_event_id, task.attempt, task.type_name) == (
        TaskKind.WORKFLOW, TaskState.READY, 2, 1, WORKFLOW)
    assert refresh(run).status == "running" and refresh(run).next_event_id == 3
    assert_consistent(run)


def test_start_of_an_open_workflow_id_is_a_conflict_naming_the_run() -> None:
    run = start("order-1")
    with pytest.raises(Conflict) as info:
        start("order-1")
    assert info.value.code == "workflow_already_started"
    assert info.value.extra["run_id"] == str(run.run_id)
    assert Execution.objects.filter(workflow_id="order-1").count() == 1


def test_a_closed_workflow_id_can_start_a_new_run() -> None:
    first = start("order-1")
    workflow_terminate(workflow_id="order-1", reason="test")
    second = start("order-1")
    assert second.run_id != first.run_id
    assert get_run("order-1").pk == second.pk
    assert refresh(first).status == "terminated" and refresh(second).status == "running"
    assert_consistent(first)
    assert_consistent(second)


def test_start_gives_a_random_id_and_an_execution_timeout_timer() -> None:
    run = start(execution_timeout_ms=60_000)
    uuid.UUID(run.workflow_id)
    [timer] = Timer.objects.filter(execution=run)
    assert timer.kind == TimerKind.WORKFLOW_TIMEOUT
    assert timedelta(seconds=59) < timer.fire_at - run.created_at <= timedelta(seconds=60)


# ---- from outside --------------------------------------------------------------------------


def test_signal_cancel_and_terminate(worker: Worker) -> None:
    run = start("wf")
    workflow_signal(workflow_id="wf", name="go", input=[1])
    workflow_request_cancel(workflow_id="wf", reason="user")
    workflow_request_cancel(workflow_id="wf", reason="again")
    assert event_types(run)[2:] == [E.WORKFLOW_EXECUTION_SIGNALED,
                                    E.WORKFLOW_EXECUTION_CANCEL_REQUESTED]
    msg = workflow_task(run)
    assert [e["event_type"] for e in msg["events"]][-1] == "WorkflowTaskStarted"
    workflow_terminate(workflow_id="wf", reason="ops")
    run = refresh(run)
    assert run.status == "terminated"
    assert run.failure == {"type": "Terminated", "message": "ops"}
    assert_consistent(run)
    calls: list[Callable[[], object]] = [
        lambda: workflow_signal(workflow_id="wf", name="late"),
        lambda: workflow_terminate(workflow_id="wf"),
        lambda: workflow_request_cancel(workflow_id="wf"),
    ]
    for call in calls:
        before = count_events()
        with pytest.raises(Conflict) as info:
            call()
        assert info.value.code == "run_closed"
        assert count_events() == before
    # The worker still holding the task is refused.
    with pytest.raises(Conflict) as info:
        workflow_task_complete(token=msg["token"], commands=[], worker_id=worker.worker_id)
    assert info.value.code == "stale_task"


# ---- workflow tasks and activities ---------------------------------------------------------


def test_a_run_with_an_activity_completes(worker: Worker) -> None:
    run = start("wf")
    msg = workflow_task(run)
    assert msg["first_event_id"] == 1 and msg["attempt"] == 1
    assert [e["event_id"] for e in msg["events"]] == [1, 2, 3]
    workflow_task_complete(token=msg["token"], commands=[activity(1, input={"n": 1})],
                           worker_id=worker.worker_id)
    assert_consistent(run)
    [act] = activity_tasks(run)
    assert (act["activity_type"], act["activity_id"], act["attempt"]) == ("charge", "1", 1)
    activity_task_complete(token=act["token"], result={"paid": True},
                           worker_id=worker.worker_id)
    assert_consistent(run)
    complete(worker, run, [{"kind": "complete_workflow", "result": "ok"}])
    run = refresh(run)
    assert run.status == "completed" and run.result == "ok" and run.closed_at is not None
    assert event_types(run) == [
        E.WORKFLOW_EXECUTION_STARTED, E.WORKFLOW_TASK_SCHEDULED, E.WORKFLOW_TASK_STARTED,
        E.WORKFLOW_TASK_COMPLETED, E.ACTIVITY_TASK_SCHEDULED, E.ACTIVITY_TASK_STARTED,
        E.ACTIVITY_TASK_COMPLETED, E.WORKFLOW_TASK_SCHEDULED, E.WORKFLOW_TASK_STARTED,
        E.WORKFLOW_TASK_COMPLETED, E.WORKFLOW_EXECUTION_COMPLETED,
    ]
    assert history(run)[6].attributes["result"] == {"paid": True}
    assert_consistent(run)


def test_invalid_commands_are_refused_and_write_nothing(worker: Worker) -> None:
    run = start("wf")
    msg = workflow_task(run)
    before = count_events()
    with pytest.raises(InvalidInput) as bad:
        workflow_task_complete(token=msg["token"], commands=[{"kind": "nope"}])
    assert bad.value.code == "invalid_command"
    with pytest.raises(Conflict) as rejected:
        workflow_task_complete(token=msg["token"], commands=[
            {"kind": "complete_workflow"}, activity(1)])
    assert rejected.value.code == "invalid_command"
    assert count_events() == before
    # The task is still live: a valid completion goes through.
    workflow_task_complete(token=msg["token"], commands=[activity(1)])
    assert_consistent(run)


def test_activity_retry_backs_off_then_fails_for_good(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, retry_policy={"maximum_attempts": 3,
                                                     "initial_interval_ms": 100})])
    for attempt in (1, 2):
        [act] = activity_tasks(run)
        assert act["attempt"] == attempt and act["input"] == {"seq": 1}
        before = count_events()
        assert activity_task_fail(token=act["token"], failure={"type": "IOError"},
                                  worker_id=worker.worker_id) is None
        assert count_events() == before  # a retry does not grow the history
        task = Task.objects.get(execution=run, kind=TaskKind.ACTIVITY)
        assert (task.state, task.attempt, task.token) == (TaskState.BACKOFF, attempt + 1, "")
        assert (task.last_failure or {}).get("attempt") == attempt
        [retry] = Timer.objects.filter(execution=run, kind=TimerKind.ACTIVITY_RETRY)
        assert retry.payload["attempt"] == attempt + 1
        assert activity_tasks(run) == []  # not ready during its back-off
        fire(run, TimerKind.ACTIVITY_RETRY, 1)
        assert Task.objects.get(pk=task.pk).state == TaskState.READY
        assert_consistent(run)
    [act] = activity_tasks(run)
    assert act["attempt"] == 3
    activity_task_fail(token=act["token"], failure={"type": "IOError", "message": "down"},
                       worker_id=worker.worker_id)
    failed = history(run)[-2]
    assert failed.event_type is E.ACTIVITY_TASK_FAILED
    assert failed.attributes["attempt"] == 3
    assert failed.attributes["failure"]["message"] == "down"
    assert history(run)[-3].attributes["attempt"] == 3  # ActivityTaskStarted of attempt 3
    assert not Task.objects.filter(execution=run, kind=TaskKind.ACTIVITY).exists()
    assert not Timer.objects.filter(execution=run).exists()
    assert_consistent(run)


def test_non_retryable_failure_closes_the_activity_at_once(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, retry_policy={"non_retryable_error_types": ["Fatal"]})])
    [act] = activity_tasks(run)
    outcome = activity_task_fail(token=act["token"], failure={"type": "Fatal"})
    assert outcome is not None
    assert [e.event_type for e in outcome.events][:2] == [E.ACTIVITY_TASK_STARTED,
                                                         E.ACTIVITY_TASK_FAILED]
    assert_consistent(run)


def test_heartbeat_details_come_back_on_the_next_attempt(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, heartbeat_ms=60_000)])
    [act] = activity_tasks(run)
    assert act["heartbeat_details"] is None and act["heartbeat_timeout"] == 60.0
    [deadline] = Timer.objects.filter(execution=run, kind=TimerKind.ACTIVITY_ATTEMPT)
    assert activity_task_heartbeat(token=act["token"], details={"page": 3},
                                   worker_id=worker.worker_id) is False
    assert Timer.objects.get(pk=deadline.pk).fire_at >= deadline.fire_at
    assert Task.objects.get(execution=run, kind=TaskKind.ACTIVITY).heartbeat_details == {
        "page": 3}
    activity_task_fail(token=act["token"], failure={"type": "Crash"})
    fire(run, TimerKind.ACTIVITY_RETRY, 1)
    [again] = activity_tasks(run)
    assert again["attempt"] == 2 and again["heartbeat_details"] == {"page": 3}
    with pytest.raises(Conflict):
        activity_task_heartbeat(token=act["token"], details={"page": 4})  # the old lease
    assert_consistent(run)


def test_user_timer_fires_and_wakes_the_workflow(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [{"kind": "start_timer", "seq": 1, "duration_ms": 5_000}])
    [timer] = Timer.objects.filter(execution=run, kind=TimerKind.USER)
    assert timer.seq == 1
    assert_consistent(run)
    fire(run, TimerKind.USER, 1)
    assert event_types(run)[-2:] == [E.TIMER_FIRED, E.WORKFLOW_TASK_SCHEDULED]
    assert history(run)[-2].attributes == {"started_event_id": 5, "seq": 1}
    assert not Timer.objects.filter(execution=run).exists()
    assert_consistent(run)


def test_canceled_timer_row_goes(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [{"kind": "start_timer", "seq": 1, "duration_ms": 5_000}])
    workflow_signal(workflow_id="wf", name="now")
    complete(worker, run, [{"kind": "cancel_timer", "seq": 1}])
    assert E.TIMER_CANCELED in event_types(run)
    assert not Timer.objects.filter(execution=run).exists()
    assert_consistent(run)


def test_workflow_execution_timeout(worker: Worker) -> None:
    run = start("wf", execution_timeout_ms=1_000)
    complete(worker, run, [activity(1), {"kind": "start_timer", "seq": 2, "duration_ms": 10**6}])
    fire(run, TimerKind.WORKFLOW_TIMEOUT)
    run = refresh(run)
    assert run.status == "timed_out"
    assert (run.failure or {}).get("type") == "TimedOut"
    assert event_types(run)[-1] is E.WORKFLOW_EXECUTION_TIMED_OUT
    assert_consistent(run)


def test_start_to_close_timeout_retries_then_times_out(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, start_to_close_ms=2_000,
                                    retry_policy={"maximum_attempts": 2})])
    [act] = activity_tasks(run)
    assert act["start_to_close_timeout"] == 2.0
    assert fire(run, TimerKind.ACTIVITY_ATTEMPT, 1) is None  # attempt 1 timed out: retried
    task = Task.objects.get(execution=run, kind=TaskKind.ACTIVITY)
    assert (task.state, task.attempt) == (TaskState.BACKOFF, 2)
    with pytest.raises(Conflict):  # the timed-out attempt's worker can no longer complete it
        activity_task_complete(token=act["token"], result=1)
    fire(run, TimerKind.ACTIVITY_RETRY, 1)
    [act2] = activity_tasks(run)
    assert act2["attempt"] == 2
    outcome = fire(run, TimerKind.ACTIVITY_ATTEMPT, 1)
    assert outcome is not None
    timed_out = history(run)[-2]
    assert timed_out.event_type is E.ACTIVITY_TASK_TIMED_OUT
    assert timed_out.attributes["timeout_type"] == "start_to_close"
    assert timed_out.attributes["attempt"] == 2
    assert_consistent(run)


def test_schedule_to_close_timeout_closes_a_running_activity(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, schedule_to_close_ms=10_000)])
    [act] = activity_tasks(run)
    outcome = fire(run, TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE, 1)
    assert outcome is not None
    assert outcome.cancels == [(worker.worker_id, act["token"])]
    timed_out = history(run)[-2]
    assert timed_out.event_type is E.ACTIVITY_TASK_TIMED_OUT
    assert timed_out.attributes["timeout_type"] == "schedule_to_close"
    with pytest.raises(Conflict):
        activity_task_complete(token=act["token"], result=1)
    assert_consistent(run)


def test_schedule_to_close_deadline_stops_retries(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, schedule_to_close_ms=500,
                                    retry_policy={"initial_interval_ms": 1_000})])
    [act] = activity_tasks(run)
    outcome = activity_task_fail(token=act["token"], failure={"type": "IOError"})
    assert outcome is not None  # the retry would start after the deadline: failed for good
    assert history(run)[-2].event_type is E.ACTIVITY_TASK_FAILED
    assert_consistent(run)


def test_schedule_to_start_timeout(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, "unserved", schedule_to_start_ms=1_000)])
    assert activity_tasks(run) == []  # no worker serves the type
    fire(run, TimerKind.ACTIVITY_SCHEDULE_TO_START, 1)
    assert history(run)[-2].event_type is E.ACTIVITY_TASK_TIMED_OUT
    assert history(run)[-2].attributes["timeout_type"] == "schedule_to_start"
    assert_consistent(run)


def test_cancel_of_a_pending_activity_not_yet_running(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, "unserved")])
    workflow_signal(workflow_id="wf", name="cancel it")
    outcome = complete(worker, run, [{"kind": "request_cancel_activity", "seq": 1}])
    assert [e.event_type for e in outcome.events] == [
        E.WORKFLOW_TASK_COMPLETED, E.ACTIVITY_TASK_CANCEL_REQUESTED, E.ACTIVITY_TASK_CANCELED,
        E.WORKFLOW_TASK_SCHEDULED]
    assert outcome.cancels == []
    assert not Task.objects.filter(execution=run, kind=TaskKind.ACTIVITY).exists()
    assert_consistent(run)


def test_cancel_of_a_running_activity_tells_its_worker(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, heartbeat_ms=30_000)])
    [act] = activity_tasks(run)
    workflow_signal(workflow_id="wf", name="cancel it")
    outcome = complete(worker, run, [{"kind": "request_cancel_activity", "seq": 1}])
    assert outcome.cancels == [(worker.worker_id, act["token"])]
    assert E.ACTIVITY_TASK_CANCELED not in event_types(run)
    assert activity_task_heartbeat(token=act["token"], details=None) is True
    outcome = activity_task_fail(token=act["token"], failure={"type": "CancelledError"},
                                 canceled=True)
    assert outcome is not None
    assert [e.event_type for e in outcome.events][:2] == [E.ACTIVITY_TASK_STARTED,
                                                         E.ACTIVITY_TASK_CANCELED]
    assert_consistent(run)


def test_closing_the_run_drops_its_tasks_and_tells_running_activities(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1), activity(2, "unserved"),
                           {"kind": "start_timer", "seq": 3, "duration_ms": 60_000}])
    [act] = activity_tasks(run)
    workflow_signal(workflow_id="wf", name="stop")
    outcome = complete(worker, run, [{"kind": "fail_workflow", "failure": {"type": "Bad"}}])
    assert outcome.cancels == [(worker.worker_id, act["token"])]
    run = refresh(run)
    assert run.status == "failed" and (run.failure or {}).get("type") == "Bad"
    assert_consistent(run)
    with pytest.raises(Conflict) as info:
        activity_task_complete(token=act["token"], result=None)
    assert info.value.code == "stale_task"


def test_continue_as_new_starts_a_successor_run(worker: Worker) -> None:
    run = start("wf", execution_timeout_ms=None)
    outcome = complete(worker, run, [{"kind": "continue_as_new", "input": {"page": 2}}])
    old = refresh(run)
    assert old.status == "continued_as_new"
    closing = history(old)[-1]
    assert closing.event_type is E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW
    new = get_run("wf")
    assert new.pk != old.pk and str(new.run_id) == closing.attributes["new_run_id"]
    assert new.status == "running" and new.input == {"page": 2}
    started = history(new)[0].attributes
    assert started["continued_from_run_id"] == str(old.run_id)
    assert started["input"] == {"page": 2}
    assert outcome.execution.pk == old.pk
    assert_consistent(old)
    assert_consistent(new)
    msg = workflow_task(new)
    assert msg["first_event_id"] == 1 and msg["run_id"] == str(new.run_id)


def test_continue_as_new_with_news_runs_the_task_again(worker: Worker) -> None:
    run = start("wf")
    msg = workflow_task(run)
    workflow_signal(workflow_id="wf", name="late")
    workflow_task_complete(token=msg["token"], commands=[{"kind": "continue_as_new"}])
    assert refresh(run).status == "running"
    assert Execution.objects.filter(workflow_id="wf").count() == 1
    assert_consistent(run)


def test_workflow_task_failure_retries_after_a_back_off(worker: Worker) -> None:
    run = start("wf")
    msg = workflow_task(run)
    workflow_task_fail(token=msg["token"], cause="nondeterminism",
                       failure={"type": "NonDeterminismError", "message": "boom"},
                       worker_id=worker.worker_id)
    run = refresh(run)
    failure = run.last_task_failure or {}
    assert (failure.get("cause"), failure.get("attempt")) == ("nondeterminism", 1)
    assert event_types(run)[-1] is E.WORKFLOW_TASK_FAILED
    assert not Task.objects.filter(execution=run).exists()
    assert Timer.objects.filter(execution=run, kind=TimerKind.WORKFLOW_TASK_RETRY).count() == 1
    assert_consistent(run)
    fire(run, TimerKind.WORKFLOW_TASK_RETRY)
    msg = workflow_task(run)
    assert msg["attempt"] == 2 and msg["first_event_id"] == 1
    workflow_task_complete(token=msg["token"], commands=[])
    assert refresh(run).last_task_failure is None
    assert_consistent(run)


# ---- fencing -------------------------------------------------------------------------------


def test_stale_duplicate_forged_and_foreign_completions_write_nothing(worker: Worker) -> None:
    # Less room than ``worker``, so the dispatcher leases the task to ``worker`` whatever order
    # the database returns the sessions in.
    other = register("w2", max_tasks=1)
    run = start("wf")
    msg = workflow_task(run)
    token = msg["token"]
    task_id, _, secret = token.partition(".")
    forged = [f"{task_id}.{'0' * len(secret)}", f"{int(task_id) + 1}.{secret}", "garbage",
              "", ".", f"{task_id}", "9" * 30 + ".x", f"-{task_id}.{secret}"]
    before = count_events()
    for bad in forged:
        with pytest.raises(Conflict) as info:
            workflow_task_complete(token=bad, commands=[])
        assert info.value.code == "stale_task"
    with pytest.raises(Conflict) as info:
        workflow_task_complete(token=token, commands=[], worker_id=other.worker_id)
    assert info.value.code == "stale_task"
    with pytest.raises(Conflict):
        activity_task_complete(token=token, result=None)  # the wrong kind of task
    with pytest.raises(Conflict):
        workflow_task_fail(token=token, cause="x", failure={}, worker_id=other.worker_id)
    assert count_events() == before
    workflow_task_complete(token=token, commands=[activity(1)], worker_id=worker.worker_id)
    after = count_events()
    with pytest.raises(Conflict) as info:  # a duplicate of the completion
        workflow_task_complete(token=token, commands=[activity(1)],
                               worker_id=worker.worker_id)
    assert info.value.code == "stale_task"
    [act] = activity_tasks(run)
    with pytest.raises(Conflict):
        activity_task_complete(token=act["token"], result=1, worker_id=other.worker_id)
    with pytest.raises(Conflict):
        activity_task_fail(token=act["token"], failure={}, worker_id=other.worker_id)
    with pytest.raises(Conflict):
        activity_task_heartbeat(token=act["token"], details=1, worker_id=other.worker_id)
    assert count_events() == after
    activity_task_complete(token=act["token"], result=1, worker_id=worker.worker_id)
    with pytest.raises(Conflict):
        activity_task_complete(token=act["token"], result=1, worker_id=worker.worker_id)
    assert_consistent(run)


# ---- bugs found ----------------------------------------------------------------------------


def test_a_run_closed_by_the_task_that_scheduled_work_keeps_no_rows(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1, schedule_to_close_ms=60_000),
                           {"kind": "start_timer", "seq": 2, "duration_ms": 60_000},
                           {"kind": "complete_workflow", "result": None}])
    assert refresh(run).status == "completed"
    assert list(Task.objects.filter(execution=run)) == []
    assert list(Timer.objects.filter(execution=run)) == []


def test_work_canceled_by_the_task_that_scheduled_it_keeps_no_rows(worker: Worker) -> None:
    run = start("wf")
    complete(worker, run, [activity(1), {"kind": "request_cancel_activity", "seq": 1},
                           {"kind": "start_timer", "seq": 2, "duration_ms": 60_000},
                           {"kind": "cancel_timer", "seq": 2}])
    assert E.ACTIVITY_TASK_CANCELED in event_types(run)
    assert list(Task.objects.filter(execution=run, kind=TaskKind.ACTIVITY)) == []
    assert list(Timer.objects.filter(execution=run)) == []


def test_a_closing_command_before_continue_as_new_is_refused(worker: Worker) -> None:
    run = start("wf")
    msg = workflow_task(run)
    with pytest.raises(Conflict) as info:
        workflow_task_complete(token=msg["token"], commands=[
            {"kind": "complete_workflow"}, {"kind": "continue_as_new"}])
    assert info.value.code == "invalid_command"

