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


async def _next_task(comm: WebsocketCommunicator, kind: str,
                     frames: list[dict[str, Any]]) -> dict[str, Any]:
    """The next frame, a task of ``kind``; it and an ``ack`` frame before it go to ``frames``."""
    frame: dict[str, Any] = await comm.receive_json_from(timeout=10)
    if frame["type"] == "ack":
        frames.append(frame)
        frame = await comm.receive_json_from(timeout=10)
    frames.append(frame)
    assert frame["type"] == kind, frame
    return frame


async def _one_step(comm: WebsocketCommunicator, client: APIClient,
                    workflow_id: str) -> list[dict[str, Any]]:
    """Start a run, complete its first workflow task with an activity, the activity, then
    the run; the frames the engine sent back after each completion."""
    await database_sync_to_async(_start)(client, workflow_id)
    first = await comm.receive_json_from(timeout=10)
    assert first["type"] == "workflow_task"
    frames: list[dict[str, Any]] = []
    await comm.send_json_to({"type": "workflow_task_completed", "id": "wt1",
                             "token": first["token"], "commands": [SCHEDULE]})
    activity = await _next_task(comm, "activity_task", frames)
    await comm.send_json_to({"type": "activity_task_completed", "id": "act1",
                             "token": activity["token"], "result": 2})
    second = await _next_task(comm, "workflow_task", frames)
    await comm.send_json_to({"type": "workflow_task_completed", "id": "wt2",
                             "token": second["token"],
                             "commands": [{"kind": "complete_workflow", "result": 2}]})
    frames.append(await comm.receive_json_from(timeout=10))
    assert await comm.receive_nothing(timeout=0.2)
    assert await database_sync_to_async(_status)(workflow_id) == "completed"
    return frames


# (type, ack, id) of the frames the engine sends after each completion of ``_one_step``.
CARRIED = [("activity_task", "wt1", None), ("workflow_task", "act1", None),
           ("ack", None, "wt2")]  # the run closed: nothing to carry the last one
SEPARATE = [("ack", None, "wt1"), ("activity_task", None, None), ("ack", None, "act1"),
            ("workflow_task", None, None), ("ack", None, "wt2")]


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("acks_on_tasks", "expected"), [(True, CARRIED), (False, SEPARATE)],
                         ids=["the next task carries the ack", "a worker that did not say so"])
def test_acks_go_on_the_next_task_for_a_worker_that_said_so(
        api_client: APIClient, acks_on_tasks: bool,
        expected: list[tuple[str, str | None, str | None]]) -> None:
    async def scenario() -> None:
        comm = await _connect(acks_on_tasks=acks_on_tasks)
        try:
            frames = await _one_step(comm, api_client, f"acks-{acks_on_tasks}")
        finally:
            await comm.disconnect()
        assert [(f["type"], f.get("ack"), f.get("id")) for f in frames] == expected

    asyncio.run(scenario())
