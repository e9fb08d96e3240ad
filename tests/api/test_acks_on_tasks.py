"""A worker that says ``acks_on_tasks`` in its hello takes the ``ack`` of a completion on the
task frame that completion hands it (one frame instead of two per step); a completion that
hands it nothing, and a worker that did not say so, get an ``ack`` frame of their own."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from rest_framework.test import APIClient

from schedproject.asgi import application
from workflows.models import ApiToken, Execution, TokenScope

QUEUE = "acks"


async def _connect(*, acks_on_tasks: bool) -> WebsocketCommunicator:
    _, raw = await database_sync_to_async(ApiToken.issue)("worker", scope=TokenScope.WORKER)
    comm = WebsocketCommunicator(application, "/ws/worker/",
                                 headers=[(b"authorization", f"Bearer {raw}".encode())])
    connected, _ = await comm.connect(timeout=10)
    assert connected
    hello: dict[str, Any] = {"type": "hello", "task_queue": QUEUE, "workflow_types": ["T"],
                             "activity_types": ["act"], "max_workflow_tasks": 5,
                             "max_activity_tasks": 5}
    if acks_on_tasks:
        hello["acks_on_tasks"] = True
    await comm.send_json_to(hello)
    assert (await comm.receive_json_from(timeout=10))["type"] == "welcome"
    return comm


def _start(client: APIClient, workflow_id: str) -> None:
    r = client.post("/api/workflows", {"workflow_type": "T", "workflow_id": workflow_id,
                                       "task_queue": QUEUE, "input": 1}, format="json")
    assert r.status_code == 201, r.content


def _status(workflow_id: str) -> str:
    return str(Execution.objects.get(workflow_id=workflow_id).status)


SCHEDULE = {"kind": "schedule_activity", "seq": 1, "activity_type": "act", "input": 1}


async def _one_step(comm: WebsocketCommunicator, client: APIClient,
                    workflow_id: str) -> list[dict[str, Any]]:
    """Start a run, complete its first workflow task with an activity, the activity, then
    the run; the frames the engine sent back after each completion."""
    await database_sync_to_async(_start)(client, workflow_id)
    first = await comm.receive_json_from(timeout=10)
    assert first["type"] == "workflow_task"
    frames = []
    await comm.send_json_to({"type": "workflow_task_completed", "id": "wt1",
                             "token": first["token"], "commands": [SCHEDULE]})
    activity = await comm.receive_json_from(timeout=10)
    if activity["type"] == "ack":
        frames.append(activity)
        activity = await comm.receive_json_from(timeout=10)
    frames.append(activity)
    assert activity["type"] == "activity_task", activity
    await comm.send_json_to({"type": "activity_task_completed", "id": "act1",
                             "token": activity["token"], "result": 2})
    second = await comm.receive_json_from(timeout=10)
    if second["type"] == "ack":
        frames.append(second)
        second = await comm.receive_json_from(timeout=10)
    frames.append(second)
    assert second["type"] == "workflow_task", second
    await comm.send_json_to({"type": "workflow_task_completed", "id": "wt2",
                             "token": second["token"],
                             "commands": [{"kind": "complete_workflow", "result": 2}]})
    frames.append(await comm.receive_json_from(timeout=10))
    assert await comm.receive_nothing(timeout=0.2)
    assert await database_sync_to_async(_status)(workflow_id) == "completed"
    return frames


@pytest.mark.django_db(transaction=True)
def test_the_next_task_carries_the_ack(api_client: APIClient) -> None:
    async def scenario() -> None:
        comm = await _connect(acks_on_tasks=True)
        try:
            frames = await _one_step(comm, api_client, "carried")
        finally:
            await comm.disconnect()
        assert [(f["type"], f.get("ack"), f.get("id")) for f in frames] == [
            ("activity_task", "wt1", None),
            ("workflow_task", "act1", None),
            ("ack", None, "wt2"),  # the run closed: nothing to carry it
        ]

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_did_not_say_so_gets_ack_frames(api_client: APIClient) -> None:
    async def scenario() -> None:
        comm = await _connect(acks_on_tasks=False)
        try:
            frames = await _one_step(comm, api_client, "separate")
        finally:
            await comm.disconnect()
        assert [(f["type"], f.get("id")) for f in frames] == [
            ("ack", "wt1"), ("activity_task", None), ("ack", "act1"), ("workflow_task", None),
            ("ack", "wt2")]
        assert not any("ack" in f for f in frames if f["type"] != "ack")

    asyncio.run(scenario())
