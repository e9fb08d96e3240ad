"""Racing completions on PostgreSQL: the row locks and the token fence let exactly one win.

SQLite serializes writers, so these races are only meaningful on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from dispatch.models import Task, TaskKind
from timers.models import Timer, TimerKind
from timers.services import timer_fire
from workflows.core.events import EventType
from workflows.errors import Conflict
from workflows.models import Execution
from workflows.services import (
    activity_task_complete,
    activity_task_heartbeat,
    workflow_signal,
    workflow_start,
    workflow_task_complete,
)

from .conftest import (
    QUEUE,
    WORKFLOW,
    Worker,
    activity,
    activity_tasks,
    assert_consistent,
    event_types,
    workflow_task,
)

E = EventType
THREADS = 16

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.django_db(transaction=True),
]


@pytest.fixture(autouse=True)
def _postgres_only(db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...)")


def race(call: Callable[[], Any]) -> tuple[int, list[str]]:
    """Run ``call`` in THREADS threads released at once; the successes and refusal codes."""
    barrier = threading.Barrier(THREADS)
    lock = threading.Lock()
    wins: list[Any] = []
    codes: list[str] = []
    errors: list[BaseException] = []

    def run() -> None:
        try:
            barrier.wait(timeout=30)
            try:
                result = call()
            except Conflict as exc:
                with lock:
                    codes.append(exc.code)
            else:
                with lock:
                    wins.append(result)
        except BaseException as exc:  # surfaced below; a thread must not swallow it
            with lock:
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run) for _ in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return len(wins), codes


def test_one_of_many_identical_workflow_task_completions_applies(leader: int,
                                                                 worker: Worker) -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="race")
    token = workflow_task(run)["token"]
    wins, codes = race(lambda: workflow_task_complete(
        token=token, commands=[activity(1)], worker_id=worker.worker_id))
    assert wins == 1
    assert codes == ["stale_task"] * (THREADS - 1)
    types = event_types(run)
    assert types.count(E.WORKFLOW_TASK_COMPLETED) == 1
    assert types.count(E.ACTIVITY_TASK_SCHEDULED) == 1
    assert_consistent(run)


def test_one_of_many_identical_activity_completions_applies(leader: int,
                                                            worker: Worker) -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="race")
    workflow_task_complete(token=workflow_task(run)["token"], commands=[activity(1)])
    [act] = activity_tasks(run)
    wins, codes = race(lambda: activity_task_complete(
        token=act["token"], result={"ok": True}, worker_id=worker.worker_id))
    assert wins == 1
    assert codes == ["stale_task"] * (THREADS - 1)
    types = event_types(run)
    assert types.count(E.ACTIVITY_TASK_COMPLETED) == 1
    assert types.count(E.ACTIVITY_TASK_STARTED) == 1
    assert types.count(E.WORKFLOW_TASK_SCHEDULED) == 2
    assert_consistent(run)


def test_racing_different_transitions_on_one_run_keep_history_dense(leader: int,
                                                                    worker: Worker) -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="race")
    wins, codes = race(lambda: workflow_signal(workflow_id="race", name="s"))
    assert (wins, codes) == (THREADS, [])
    assert event_types(run).count(E.WORKFLOW_EXECUTION_SIGNALED) == THREADS
    assert_consistent(run)


def test_racing_starts_of_one_workflow_id_open_one_run(leader: int) -> None:
    wins, codes = race(lambda: workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE,
                                              workflow_id="race"))
    assert wins == 1
    assert codes == ["workflow_already_started"] * (THREADS - 1)
    [run] = Execution.objects.filter(workflow_id="race")
    assert_consistent(run)


def test_a_heartbeat_racing_its_deadline_does_not_deadlock(leader: int, worker: Worker) -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="race")
    workflow_task_complete(token=workflow_task(run)["token"],
                           commands=[activity(1, heartbeat_ms=1_000)])
    [act] = activity_tasks(run)
    task = Task.objects.get(execution=run, kind=TaskKind.ACTIVITY)
    [deadline] = Timer.objects.filter(execution=run, kind=TimerKind.ACTIVITY_ATTEMPT)
    errors: list[BaseException] = []

    def in_thread(call: Callable[[], Any]) -> threading.Thread:
        def run_call() -> None:
            try:
                call()
            except Conflict:
                pass
            except BaseException as exc:
                errors.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=run_call)
        thread.start()
        time.sleep(0.5)  # let it reach its lock wait
        return thread

    # Hold the task row so the heartbeat queues on it first, then the timer behind it.
    with transaction.atomic():
        Task.objects.select_for_update().get(pk=task.pk)
        beat = in_thread(lambda: activity_task_heartbeat(token=act["token"], details=1))
        fire = in_thread(lambda: timer_fire(timer_id=deadline.pk, now=deadline.fire_at))
    beat.join(timeout=30)
    fire.join(timeout=30)
    assert errors == []
