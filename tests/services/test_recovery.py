"""A worker taking its leases over on a new socket, and the sessions of dead engines."""

from __future__ import annotations

import os
from datetime import timedelta

import pytest
from django.utils import timezone

from dispatch import services as dispatch
from dispatch.engine import ENGINE_ID
from dispatch.models import EngineProcess, Task, TaskKind, TaskState, WorkerSession
from sdk import protocol
from workflows.services import activity_task_complete, workflow_start, workflow_task_complete

from .conftest import (
    ACTIVITIES,
    QUEUE,
    TERM,
    WORKFLOW,
    Worker,
    activity,
    activity_tasks,
    workflow_task,
)

pytestmark = pytest.mark.django_db


def running_activities(worker: Worker, count: int) -> list[str]:
    """Start a run whose first workflow task schedules ``count`` activities, all leased to
    ``worker``; their tokens."""
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="wf")
    workflow_task_complete(token=workflow_task(run)["token"],
                           commands=[activity(i + 1) for i in range(count)])
    tokens = [m["token"] for m in activity_tasks(run)]
    assert len(tokens) == count
    return tokens


def reconnect(previous: str, tokens: list[str], new: str = "w2") -> dispatch.Registered:
    hello = protocol.Hello(task_queue=QUEUE, workflow_types=[WORKFLOW],
                           activity_types=list(ACTIVITIES), resume_worker_id=previous,
                           resume_tokens=tokens)
    return dispatch.worker_register(worker_id=new, channel_name=f"chan.{new}",
                                    engine_id="engine-2", hello=hello, now=timezone.now())


def test_a_reconnecting_worker_takes_over_the_leases_it_names(worker: Worker) -> None:
    kept, _ = running_activities(worker, 2)
    registered = reconnect(worker.worker_id, [kept])
    assert registered.resumed == [(kept, "activity_task")]
    assert not WorkerSession.objects.filter(worker_id=worker.worker_id).exists()
    rows = {t.seq: t for t in Task.objects.filter(kind=TaskKind.ACTIVITY)}
    assert rows[1].lease_owner == "w2" and rows[1].token == kept
    # The lease it did not name went back to the queue at once.
    assert rows[2].state == TaskState.READY and rows[2].token == ""
    # Its kept result is accepted on the new socket.
    activity_task_complete(token=kept, result=1, worker_id="w2")
    assert not Task.objects.filter(kind=TaskKind.ACTIVITY, seq=1).exists()


def test_tokens_it_does_not_hold_take_nothing_over(worker: Worker) -> None:
    (token,) = running_activities(worker, 1)
    forged = token.split(".")[0] + ".forged"
    assert reconnect(worker.worker_id, [forged]).resumed == []
    assert reconnect("someone-else", [token], new="w3").resumed == []
    task = Task.objects.get(kind=TaskKind.ACTIVITY)
    assert task.lease_owner == worker.worker_id and task.token == token
    assert WorkerSession.objects.filter(worker_id=worker.worker_id).exists()


def engine(engine_id: str, *, host: str, pid: int, beat_seconds_ago: float) -> None:
    at = timezone.now() - timedelta(seconds=beat_seconds_ago)
    EngineProcess.objects.create(engine_id=engine_id, host=host, pid=pid, started_at=at,
                                 heartbeat_at=at)


def test_the_sessions_of_dead_engines_go_back_and_a_live_ones_stay(leader: int) -> None:
    dispatch.engine_register(now=timezone.now() - timedelta(seconds=10))  # this leader
    engine("silent", host="elsewhere", pid=1, beat_seconds_ago=60)
    engine("alive", host="elsewhere", pid=1, beat_seconds_ago=0.5)
    engine("killed-here", host=dispatch.HOST, pid=os.getpid() + 10**7, beat_seconds_ago=2)
    engine("restarting", host=dispatch.HOST, pid=os.getpid(), beat_seconds_ago=0.2)
    for engine_id in ("silent", "alive", "killed-here", "restarting"):
        hello = protocol.Hello(task_queue=QUEUE, workflow_types=[WORKFLOW])
        dispatch.worker_register(worker_id=f"on-{engine_id}", channel_name="c",
                                 engine_id=engine_id, hello=hello, now=timezone.now())
    dispatch.reclaim(now=timezone.now(), term=TERM)
    left = set(WorkerSession.objects.values_list("worker_id", flat=True))
    # Silent past the timeout, or of this host with its process gone past the grace: dead.
    # A live engine, and one whose pid is this process's but beat just now, stay for now.
    assert left == {"on-alive", "on-restarting"}
    assert set(EngineProcess.objects.values_list("engine_id", flat=True)) == {
        ENGINE_ID, "alive", "restarting"}


def test_a_leader_that_just_started_gives_the_workers_their_grace(leader: int) -> None:
    dispatch.engine_register(now=timezone.now())
    # The engine it replaced, and one long silent (a restart slower than the timeout).
    engine("killed-here", host=dispatch.HOST, pid=os.getpid() + 10**7, beat_seconds_ago=3)
    engine("silent", host="elsewhere", pid=1, beat_seconds_ago=60)
    hello = protocol.Hello(task_queue=QUEUE, workflow_types=[WORKFLOW])
    for engine_id in ("killed-here", "silent"):
        dispatch.worker_register(worker_id=f"on-{engine_id}", channel_name="c",
                                 engine_id=engine_id, hello=hello, now=timezone.now())
    dispatch.reclaim(now=timezone.now(), term=TERM)
    assert WorkerSession.objects.count() == 2
    dispatch.reclaim(now=timezone.now() + timedelta(seconds=1.5), term=TERM)
    assert not WorkerSession.objects.exists()


def test_an_engine_declared_dead_learns_it_at_its_next_beat(db: None) -> None:
    dispatch.engine_register(now=timezone.now())
    assert dispatch.engine_beat(now=timezone.now()) is True
    EngineProcess.objects.filter(engine_id=ENGINE_ID).delete()
    assert dispatch.engine_beat(now=timezone.now()) is False
    assert dispatch.engine_beat(now=timezone.now()) is True  # its row is back
