"""Fixtures for the service tests: a leader term, connected workers, and helpers that drive a
run through the services the way the engine's consumer and loops do (no mocks; a real DB)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import pytest
from django.utils import timezone

from dispatch import services as dispatch
from dispatch.models import Leadership, Task, TaskKind, TaskState
from sdk import protocol
from timers.models import Timer, TimerKind
from timers.services import timer_fire
from workflows.core.events import Event, EventType
from workflows.core.state import ExecutionState, fold
from workflows.models import Execution, HistoryEvent
from workflows.services import CHILD_TIMER_KINDS, Lessee, Outcome

E = EventType
TERM = 1
QUEUE = "main"
WORKFLOW = "Order"
ACTIVITIES = ("charge", "ship")


@dataclass
class Worker:
    """A registered worker session, as the consumer registers one on ``hello``."""

    worker_id: str
    channel: str
    task_queue: str = QUEUE

    def lessee(self, *, workflow_slots: int = 1, activity_slots: int = 10) -> Lessee:
        return Lessee(self.worker_id, self.task_queue, frozenset({WORKFLOW}),
                      frozenset(ACTIVITIES), workflow_slots, activity_slots, 30.0, 10.0)


def register(worker_id: str, *, now: datetime | None = None, task_queue: str = QUEUE,
             max_tasks: int = 100) -> Worker:
    hello = protocol.Hello(task_queue=task_queue, workflow_types=[WORKFLOW],
                           activity_types=list(ACTIVITIES), max_workflow_tasks=max_tasks,
                           max_activity_tasks=max_tasks, identity=f"{worker_id}@test")
    dispatch.worker_register(worker_id=worker_id, channel_name=f"chan.{worker_id}",
                             engine_id="engine-1", hello=hello, now=now or timezone.now())
    return Worker(worker_id, f"chan.{worker_id}", task_queue)


@pytest.fixture
def leader(db: None) -> int:
    Leadership.objects.create(name="dispatcher", term=TERM, holder="test")
    return TERM


@pytest.fixture
def worker(leader: int) -> Worker:
    return register("w1")


def tick(now: datetime | None = None) -> list[tuple[str, dict[str, Any]]]:
    """One dispatch tick as the leader of term ``TERM``."""
    return dispatch.dispatch_tick(now=now or timezone.now(), term=TERM)


def messages(deliveries: list[tuple[str, dict[str, Any]]], kind: str,
             run: Execution | None = None) -> list[dict[str, Any]]:
    return [m for _, m in deliveries if m["type"] == kind
            and (run is None or m["run_id"] == str(run.run_id))]


def workflow_task(run: Execution, now: datetime | None = None) -> dict[str, Any]:
    """Dispatch and return the run's one workflow task message."""
    found = messages(tick(now), "workflow_task", run)
    assert len(found) == 1, f"expected one workflow task for the run, got {found}"
    return found[0]


def activity_tasks(run: Execution, now: datetime | None = None) -> list[dict[str, Any]]:
    return messages(tick(now), "activity_task", run)


def refresh(run: Execution) -> Execution:
    return Execution.objects.get(pk=run.pk)


def history(run: Execution) -> list[Event]:
    return [h.to_core() for h in HistoryEvent.objects.filter(execution=run).order_by("event_id")]


def event_types(run: Execution) -> list[EventType]:
    return [e.event_type for e in history(run)]


def count_events() -> int:
    return HistoryEvent.objects.count()


def due_timers(run: Execution, kind: str, seq: int | None = None) -> list[Timer]:
    timers = Timer.objects.filter(execution=run, kind=kind)
    if seq is not None:
        timers = timers.filter(seq=seq)
    return list(timers)


def fire(run: Execution, kind: str, seq: int | None = None,
         now: datetime | None = None) -> Outcome | None:
    """Fire the run's one timer of ``kind`` (at its due time unless ``now`` is given)."""
    timers = due_timers(run, kind, seq)
    assert len(timers) == 1, f"expected one {kind} timer, got {timers}"
    return timer_fire(timer_id=timers[0].pk, now=now or timers[0].fire_at)


def activity(seq: int, activity_type: str = "charge", **options: Any) -> dict[str, Any]:
    return {"kind": "schedule_activity", "seq": seq, "activity_type": activity_type,
            "input": {"seq": seq}, **options}


def assert_consistent(run: Execution) -> ExecutionState:
    """The snapshot equals the fold of the history, and the task and timer rows match it."""
    run = refresh(run)
    events = history(run)
    assert [e.event_id for e in events] == list(range(1, len(events) + 1))
    state = fold(events)
    assert state.to_dict() == run.state
    assert run.next_event_id == len(events) + 1
    assert run.status == state.status.value
    tasks = Task.objects.filter(execution=run)
    # What a run holds for its parent (a close policy, a signal) outlives the run's close.
    timers = Timer.objects.filter(execution=run).exclude(kind__in=CHILD_TIMER_KINDS)
    if not state.is_open:
        assert run.closed_at is not None
        assert not tasks.exists(), f"closed run {run.status} keeps tasks {list(tasks)}"
        assert not timers.exists(), f"closed run {run.status} keeps timers {list(timers)}"
        return state
    for seq, pending in state.activities.items():
        rows = tasks.filter(kind=TaskKind.ACTIVITY, seq=seq)
        assert rows.count() == 1, f"activity {seq} has {rows.count()} task rows"
        assert rows[0].scheduled_event_id == pending.scheduled_event_id
    assert set(tasks.filter(kind=TaskKind.ACTIVITY).values_list("seq", flat=True)) == set(
        state.activities), "a task row for an activity that is not pending"
    for seq in state.timers:
        assert timers.filter(kind=TimerKind.USER, seq=seq).count() == 1, f"timer {seq}"
    user_timers = set(timers.filter(kind=TimerKind.USER).values_list("seq", flat=True))
    assert user_timers == set(state.timers), "a user timer row for a timer that is not pending"
    wt = state.workflow_task
    wf_tasks = list(tasks.filter(kind=TaskKind.WORKFLOW))
    if wt is None:
        assert wf_tasks == []
        if state.workflow_task_needed:  # a failed workflow task: its retry must be coming
            assert timers.filter(kind=TimerKind.WORKFLOW_TASK_RETRY).exists(), "stranded run"
    else:
        assert [t.scheduled_event_id for t in wf_tasks] == [wt.scheduled_event_id]
        assert (wf_tasks[0].state == TaskState.LEASED) == (wt.started_event_id is not None)
    for task in tasks.filter(kind=TaskKind.ACTIVITY, state=TaskState.BACKOFF):
        assert timers.filter(kind=TimerKind.ACTIVITY_RETRY, seq=task.seq).count() == 1
    for task in tasks.filter(kind=TaskKind.ACTIVITY, state=TaskState.LEASED):
        if task.options.get("start_to_close_ms") or task.options.get("heartbeat_ms"):
            assert timers.filter(kind=TimerKind.ACTIVITY_ATTEMPT, seq=task.seq).count() == 1
    if events[0].attributes.get("execution_timeout_ms"):
        assert timers.filter(kind=TimerKind.WORKFLOW_TIMEOUT).count() == 1
    return state


def later(seconds: float) -> datetime:
    return timezone.now() + timedelta(seconds=seconds)
