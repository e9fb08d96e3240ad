"""Children closing while their parent acts on them, on PostgreSQL: locks across runs go from
child to parent only, so no two transitions deadlock and every history stays consistent."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from timers.models import Timer
from timers.services import timer_fire
from workflows.core.events import EventType
from workflows.models import Execution
from workflows.services import (
    workflow_start,
    workflow_task_complete,
    workflow_terminate,
)

from .conftest import QUEUE, WORKFLOW, Worker, assert_consistent, event_types, history, tick

E = EventType
CHILDREN = 8

pytestmark = [pytest.mark.postgres, pytest.mark.django_db(transaction=True)]


@pytest.fixture(autouse=True)
def _postgres_only(db: None) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("needs PostgreSQL (DATABASE_URL=postgres://...)")


def all_at_once(calls: list[Callable[[], Any]]) -> None:
    barrier = threading.Barrier(len(calls))
    errors: list[BaseException] = []

    def run(call: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            call()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(call,)) for call in calls]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []


def tokens() -> dict[str, str]:
    return {m["workflow_id"]: m["token"] for _, m in tick() if m["type"] == "workflow_task"}


def test_children_closing_while_the_parent_signals_them_and_is_terminated(
        leader: int, worker: Worker) -> None:
    parent = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="mom")
    ids = [f"kid-{i}" for i in range(CHILDREN)]
    workflow_task_complete(token=tokens()["mom"], worker_id=worker.worker_id, commands=[
        {"kind": "start_child_workflow", "seq": i + 1, "workflow_type": WORKFLOW,
         "workflow_id": kid} for i, kid in enumerate(ids)])
    taken = tokens()
    workflow_task_complete(token=taken["mom"], worker_id=worker.worker_id, commands=[
        {"kind": "signal_external_workflow", "seq": 100 + i, "workflow_id": kid,
         "signal_name": "go"} for i, kid in enumerate(ids)])
    signals = list(Timer.objects.filter(kind="child_signal").values_list("pk", flat=True))
    assert len(signals) == CHILDREN
    calls: list[Callable[[], Any]] = [
        lambda kid=kid: workflow_task_complete(  # type: ignore[misc]
            token=taken[kid], worker_id=worker.worker_id,
            commands=[{"kind": "complete_workflow", "result": kid}]) for kid in ids]
    calls += [lambda pk=pk: timer_fire(timer_id=pk, now=Timer.objects.get(  # type: ignore[misc]
        pk=pk).fire_at) if Timer.objects.filter(pk=pk).exists() else None for pk in signals]
    calls.append(lambda: workflow_terminate(workflow_id="mom", reason="enough"))
    all_at_once(calls)
    # What was left for later (a busy parent's news, the close policy) is fired, as the
    # timer manager does: then every history and every row is consistent.
    for _ in range(10):
        due = list(Timer.objects.values_list("pk", "fire_at"))
        if not due:
            break
        for pk, fire_at in due:
            timer_fire(timer_id=pk, now=fire_at)
    assert not Timer.objects.exists()
    types = event_types(parent)
    assert types[-1] is E.WORKFLOW_EXECUTION_TERMINATED
    assert_consistent(parent)
    for kid in Execution.objects.filter(workflow_id__in=ids):
        assert_consistent(kid)
        assert kid.status in ("completed", "terminated")


def test_a_child_whose_parent_is_busy_leaves_its_end_for_the_parent_to_record(
        leader: int, worker: Worker) -> None:
    parent = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="dad")
    workflow_task_complete(token=tokens()["dad"], worker_id=worker.worker_id, commands=[
        {"kind": "start_child_workflow", "seq": 1, "workflow_type": WORKFLOW,
         "workflow_id": "son"}])
    taken = tokens()
    holding, release = threading.Event(), threading.Event()

    def hold_the_parent() -> None:
        try:
            with transaction.atomic():
                Execution.objects.select_for_update(no_key=True).get(pk=parent.pk)  # as lock()
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    holder = threading.Thread(target=hold_the_parent)
    holder.start()
    try:
        assert holding.wait(timeout=30)
        workflow_task_complete(token=taken["son"], worker_id=worker.worker_id,
                               commands=[{"kind": "complete_workflow", "result": "hi"}])
    finally:  # the child's close did not wait for the parent's lock
        release.set()
        holder.join(timeout=30)
    assert E.CHILD_WORKFLOW_EXECUTION_COMPLETED not in event_types(parent)
    timer = Timer.objects.get(execution=parent, kind="child_closed")
    timer_fire(timer_id=timer.pk, now=timer.fire_at)
    closing = [e for e in history(parent)
               if e.event_type is E.CHILD_WORKFLOW_EXECUTION_COMPLETED]
    assert [e.attributes["result"] for e in closing] == ["hi"]
    assert_consistent(parent)
