"""POST /api/workflows with a worker connected to this engine: the start leases the run's
first workflow task to it in the start's own transaction, and sends it after commit."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.utils import timezone
from rest_framework.test import APIClient

from dispatch import lessees
from dispatch import services as dispatch
from dispatch.leader import _new_term
from dispatch.models import Task, TaskKind, TaskState
from schedproject.asgi import application
from workflows.models import ApiToken, Execution, HistoryEvent, TokenScope

QUEUE = "handoff"


async def connect_worker(max_workflow_tasks: int = 2,
                         max_activity_tasks: int = 5) -> WebsocketCommunicator:
    _, raw = await database_sync_to_async(ApiToken.issue)("worker", scope=TokenScope.WORKER)
    comm = WebsocketCommunicator(application, "/ws/worker/",
                                 headers=[(b"authorization", f"Bearer {raw}".encode())])
    connected, _ = await comm.connect(timeout=10)
    assert connected
    await comm.send_json_to({"type": "hello", "task_queue": QUEUE, "workflow_types": ["T"],
                             "activity_types": ["act"], "max_workflow_tasks": max_workflow_tasks,
                             "max_activity_tasks": max_activity_tasks, "identity": "test"})
    welcome = await comm.receive_json_from(timeout=10)
    assert welcome["type"] == "welcome", welcome
    return comm


def _start(client: APIClient, workflow_id: str, workflow_type: str = "T") -> dict[str, Any]:
    r = client.post("/api/workflows", {"workflow_type": workflow_type,
                                       "workflow_id": workflow_id, "task_queue": QUEUE},
                    format="json")
    assert r.status_code == 201, r.content
    return dict(r.json())


def _history(workflow_id: str) -> list[tuple[str, Any]]:
    run = Execution.objects.get(workflow_id=workflow_id)
    return [(e.event_type, e.timestamp) for e in
            HistoryEvent.objects.filter(execution=run).order_by("event_id")]


def _workflow_task(workflow_id: str) -> Task:
    return Task.objects.get(execution__workflow_id=workflow_id, kind=TaskKind.WORKFLOW)


def _tick() -> list[tuple[str, dict[str, Any]]]:
    return dispatch.dispatch_tick(now=timezone.now(), term=_new_term("dispatcher"))


@pytest.mark.django_db(transaction=True)
def test_a_start_hands_its_first_task_to_a_connected_worker(api_client: APIClient) -> None:
    async def scenario() -> None:
        comm = await connect_worker(max_workflow_tasks=2)
        try:
            for workflow_id in ("a", "b"):
                await database_sync_to_async(_start)(api_client, workflow_id)
                task = await comm.receive_json_from(timeout=10)
                assert task["type"] == "workflow_task" and task["workflow_id"] == workflow_id
                assert task["first_event_id"] == 1
                history = await database_sync_to_async(_history)(workflow_id)
                assert [t for t, _ in history] == [
                    "WorkflowExecutionStarted", "WorkflowTaskScheduled", "WorkflowTaskStarted"]
                # Scheduled and started in the one transaction of the start.
                assert history[1][1] == history[2][1]
                row = await database_sync_to_async(_workflow_task)(workflow_id)
                assert row.state == TaskState.LEASED and row.token == task["token"]
            # Both slots are held: the third start leaves its task to the dispatcher.
            await database_sync_to_async(_start)(api_client, "c")
            assert await comm.receive_nothing(timeout=0.2)
            row = await database_sync_to_async(_workflow_task)("c")
            assert row.state == TaskState.READY
            # A type the worker does not serve is not handed to it either.
            await database_sync_to_async(_start)(api_client, "d", "Other")
            row = await database_sync_to_async(_workflow_task)("d")
            assert row.state == TaskState.READY
            # Completing "a" frees a slot; "c" then goes the dispatcher's way, as before.
            await comm.send_json_to({"type": "workflow_task_completed", "id": "1",
                                     "token": (await database_sync_to_async(_workflow_task)(
                                         "a")).token,
                                     "commands": [{"kind": "complete_workflow"}]})
            assert (await comm.receive_json_from(timeout=10))["type"] == "ack"
            deliveries = await database_sync_to_async(_tick)()
            assert [m["workflow_id"] for _, m in deliveries] == ["c"]
        finally:
            await comm.disconnect()
        assert lessees._workers == {}

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_without_a_connected_worker_the_dispatcher_leases_the_start(
        api_client: APIClient) -> None:
    _start(api_client, "a")
    assert _workflow_task("a").state == TaskState.READY

    async def scenario() -> None:
        comm = await connect_worker()
        try:
            deliveries = await database_sync_to_async(_tick)()
            [(_, message)] = deliveries
            assert message["workflow_id"] == "a"
            history = await database_sync_to_async(_history)("a")
            assert history[1][1] != history[2][1]  # started by the dispatcher's tick, later
        finally:
            await comm.disconnect()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_refused_start_gives_its_reserved_slot_back(api_client: APIClient) -> None:
    async def scenario() -> None:
        comm = await connect_worker(max_workflow_tasks=2)
        try:
            await database_sync_to_async(_start)(api_client, "a")
            assert (await comm.receive_json_from(timeout=10))["workflow_id"] == "a"
            for _ in range(3):  # each takes the free slot, then gives it back
                r = await database_sync_to_async(api_client.post)(
                    "/api/workflows", {"workflow_type": "T", "workflow_id": "a",
                                       "task_queue": QUEUE}, format="json")
                assert r.status_code == 409
            await database_sync_to_async(_start)(api_client, "b")
            assert (await comm.receive_json_from(timeout=10))["workflow_id"] == "b"
            [entry] = lessees._workers.values()
            assert entry.reservations() == 0
        finally:
            await comm.disconnect()

    asyncio.run(scenario())
