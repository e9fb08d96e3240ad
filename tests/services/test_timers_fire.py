"""Firing durable timers: each kind does its one job, and a timer that no longer applies is
dropped without touching anything else."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone
from prometheus_client import REGISTRY

from dispatch.models import Leadership, Task, TaskKind, TaskState
from dispatch.store import NotLeader
from timers.models import Timer, TimerKind
from timers.services import RETRY_FAILED_SECONDS, timer_fire, timers_fire
from workflows.core.events import EventType
from workflows.models import Execution
from workflows.services import (
    activity_task_heartbeat,
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
    tick,
    workflow_task,
)

E = EventType
pytestmark = pytest.mark.django_db


def started(worker: Worker, commands: list[dict[str, Any]], **kwargs: Any) -> Execution:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="wf", **kwargs)
    workflow_task_complete(token=workflow_task(run)["token"], commands=commands,
                           worker_id=worker.worker_id)
    return run


def test_a_timer_fires_once(worker: Worker) -> None:
    run = started(worker, [{"kind": "start_timer", "seq": 1, "duration_ms": 0}])
    [timer] = Timer.objects.filter(execution=run)
    outcome = timer_fire(timer_id=timer.pk, now=timezone.now())
    assert outcome is not None
    assert [e.event_type for e in outcome.events] == [E.TIMER_FIRED, E.WORKFLOW_TASK_SCHEDULED]
    before = count_events()
    assert timer_fire(timer_id=timer.pk, now=timezone.now()) is None
    assert timer_fire(timer_id=10**9, now=timezone.now()) is None
    assert count_events() == before
    assert_consistent(run)


def test_a_user_timer_fired_while_a_task_runs_schedules_the_next_task_after_it(
        worker: Worker) -> None:
    run = started(worker, [{"kind": "start_timer", "seq": 1, "duration_ms": 0},
                           {"kind": "start_timer", "seq": 2, "duration_ms": 0}])
    fire(run, TimerKind.USER, 1)
    msg = workflow_task(run)
    fire(run, TimerKind.USER, 2)  # while the workflow task is in flight
    assert event_types(run)[-1] is E.TIMER_FIRED
    workflow_task_complete(token=msg["token"], commands=[])
    assert event_types(run)[-2:] == [E.WORKFLOW_TASK_COMPLETED, E.WORKFLOW_TASK_SCHEDULED]
    assert_consistent(run)


def test_timers_of_a_closed_run_are_dropped(worker: Worker) -> None:
    run = started(worker, [{"kind": "start_timer", "seq": 1, "duration_ms": 10}])
    [timer] = Timer.objects.filter(execution=run)
    # A timer row that outlived its run (e.g. fired while the run was closing) does nothing.
    workflow_terminate(workflow_id="wf")
    orphan = Timer.objects.create(execution=run, kind=TimerKind.USER, seq=1,
                                  fire_at=timer.fire_at, created_at=timezone.now())
    before = count_events()
    assert timer_fire(timer_id=orphan.pk, now=timezone.now()) is None
    assert count_events() == before
    assert not Timer.objects.filter(pk=orphan.pk).exists()


def test_a_workflow_task_retry_timer_after_news_scheduled_the_task_does_nothing(
        worker: Worker) -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="wf")
    msg = workflow_task(run)
    workflow_task_fail(token=msg["token"], cause="bug", failure={"type": "Bug"})
    assert_consistent(run)
    workflow_signal(workflow_id="wf", name="poke")  # news: the task is scheduled at once
    assert event_types(run)[-2:] == [E.WORKFLOW_EXECUTION_SIGNALED, E.WORKFLOW_TASK_SCHEDULED]
    assert history(run)[-1].attributes["attempt"] == 2
    before = count_events()
    assert fire(run, TimerKind.WORKFLOW_TASK_RETRY) is None
    assert count_events() == before
    assert_consistent(run)


def test_activity_retry_timer_for_a_task_not_in_back_off_does_nothing(worker: Worker) -> None:
    run = started(worker, [activity(1)])
    task = Task.objects.get(execution=run, kind=TaskKind.ACTIVITY)
    stray = Timer.objects.create(execution=run, kind=TimerKind.ACTIVITY_RETRY, seq=1,
                                 fire_at=timezone.now(), payload={"task_id": task.pk},
                                 created_at=timezone.now())
    assert timer_fire(timer_id=stray.pk, now=timezone.now()) is None
    assert Task.objects.get(pk=task.pk).state == TaskState.READY


def test_an_attempt_timer_of_an_older_lease_does_nothing(worker: Worker) -> None:
    run = started(worker, [activity(1, start_to_close_ms=1_000)])
    activity_tasks(run)
    [old] = Timer.objects.filter(execution=run, kind=TimerKind.ACTIVITY_ATTEMPT)
    payload = dict(old.payload)
    from dispatch import services as dispatch

    dispatch.release_task(Task.objects.get(execution=run, kind=TaskKind.ACTIVITY).pk,
                          now=timezone.now())
    [again] = activity_tasks(run)
    stale = Timer.objects.create(execution=run, kind=TimerKind.ACTIVITY_ATTEMPT, seq=1,
                                 fire_at=timezone.now(), payload=payload,
                                 created_at=timezone.now())
    before = count_events()
    assert timer_fire(timer_id=stale.pk, now=timezone.now() + timedelta(seconds=5)) is None
    assert count_events() == before
    task = Task.objects.get(execution=run, kind=TaskKind.ACTIVITY)
    assert (task.state, task.token, task.attempt) == (TaskState.LEASED, again["token"], 1)


def test_a_missed_heartbeat_times_the_attempt_out(worker: Worker) -> None:
    run = started(worker, [activity(1, heartbeat_ms=1_000, retry_policy={"maximum_attempts": 1})])
    [act] = activity_tasks(run)
    activity_task_heartbeat(token=act["token"], details="half")
    [timer] = Timer.objects.filter(execution=run, kind=TimerKind.ACTIVITY_ATTEMPT)
    outcome = timer_fire(timer_id=timer.pk, now=timer.fire_at)
    assert outcome is not None
    timed_out = history(run)[-2]
    assert timed_out.event_type is E.ACTIVITY_TASK_TIMED_OUT
    assert timed_out.attributes["timeout_type"] == "heartbeat"
    assert_consistent(run)


def test_schedule_to_start_does_nothing_once_the_activity_started(worker: Worker) -> None:
    run = started(worker, [activity(1, schedule_to_start_ms=1_000)])
    activity_tasks(run)
    before = count_events()
    assert fire(run, TimerKind.ACTIVITY_SCHEDULE_TO_START, 1) is None
    assert count_events() == before
    assert Task.objects.get(execution=run, kind=TaskKind.ACTIVITY).state == TaskState.LEASED
    assert_consistent(run)


def test_schedule_to_close_during_back_off_closes_the_activity(worker: Worker) -> None:
    from workflows.services import activity_task_fail

    run = started(worker, [activity(1, schedule_to_close_ms=60_000)])
    [act] = activity_tasks(run)
    activity_task_fail(token=act["token"], failure={"type": "IOError"})
    assert Task.objects.get(execution=run, kind=TaskKind.ACTIVITY).state == TaskState.BACKOFF
    outcome = fire(run, TimerKind.ACTIVITY_SCHEDULE_TO_CLOSE, 1)
    assert outcome is not None and outcome.cancels == []
    assert outcome.events[0].event_type is E.ACTIVITY_TASK_TIMED_OUT
    assert not Timer.objects.filter(execution=run, kind=TimerKind.ACTIVITY_RETRY).exists()
    assert_consistent(run)


def test_a_timer_manager_with_a_stale_term_fires_nothing(worker: Worker) -> None:
    run = started(worker, [{"kind": "start_timer", "seq": 1, "duration_ms": 0}])
    Leadership.objects.create(name="timers", term=2)
    [timer] = Timer.objects.filter(execution=run)
    before = count_events()
    with pytest.raises(NotLeader):
        timer_fire(timer_id=timer.pk, now=timezone.now(), term=1)
    assert count_events() == before and Timer.objects.filter(pk=timer.pk).exists()
    assert timer_fire(timer_id=timer.pk, now=timezone.now(), term=2) is not None
    assert_consistent(run)


def test_one_timers_bad_data_leaves_the_batch_to_the_others(worker: Worker) -> None:
    runs = {}
    for name in ("good", "bad", "other"):
        run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id=name)
        workflow_task_complete(token=workflow_task(run)["token"], worker_id=worker.worker_id,
                               commands=[{"kind": "start_timer", "seq": 1, "duration_ms": 0}])
        runs[name] = run
    # A row the timer manager cannot read (a kind it does not know).
    Timer.objects.filter(execution=runs["bad"]).update(kind="corrupt")
    Leadership.objects.create(name="timers", term=1)
    due = [(t.pk, t.execution_id) for t in Timer.objects.order_by("execution_id")]
    errors = REGISTRY.get_sample_value("sched_item_errors_total", {"loop": "timers"}) or 0
    now = timezone.now()
    fired = timers_fire(due=due, term=1, clock=lambda: now)
    assert REGISTRY.get_sample_value("sched_item_errors_total", {"loop": "timers"}) == errors + 1
    # The others fired in the same batch; the bad one is kept and tried again a little later.
    assert sorted(timer_id for timer_id, _, _ in fired) == sorted(
        pk for pk, execution in due if execution != runs["bad"].pk)
    for name in ("good", "other"):
        assert E.TIMER_FIRED in event_types(runs[name])
        assert_consistent(runs[name])
    [kept] = Timer.objects.filter(execution=runs["bad"])
    assert kept.fire_at == now + timedelta(seconds=RETRY_FAILED_SECONDS)
    assert E.TIMER_FIRED not in event_types(runs["bad"])


def test_workflow_timeout_ends_a_run_with_work_in_flight(worker: Worker) -> None:
    run = started(worker, [activity(1), activity(2, "unserved")], execution_timeout_ms=5_000)
    [act] = activity_tasks(run)
    workflow_signal(workflow_id="wf", name="x")
    tick()  # the workflow task is in flight too
    outcome = fire(run, TimerKind.WORKFLOW_TIMEOUT)
    assert outcome is not None
    assert outcome.cancels == [(worker.worker_id, act["token"])]
    assert Execution.objects.get(pk=run.pk).status == "timed_out"
    assert_consistent(run)
