"""A completion hands the worker the run's new activities within its free slots: all of
them when it is the only frame in flight, a share when frames are applied side by side."""

from __future__ import annotations

import asyncio

import pytest
from channels.db import database_sync_to_async
from rest_framework.test import APIClient

from dispatch.models import Task, TaskKind, TaskState

from .test_acks_on_tasks import _connect, _start


def _states() -> list[str]:
    return sorted(str(t.state) for t in Task.objects.filter(kind=TaskKind.ACTIVITY))


@pytest.mark.django_db(transaction=True)
def test_a_lone_completion_hands_over_every_activity_that_fits(api_client: APIClient) -> None:
    async def scenario() -> None:
        comm = await _connect(acks_on_tasks=True)  # 5 activity slots
        try:
            await database_sync_to_async(_start)(api_client, "fan-out")
            first = await comm.receive_json_from(timeout=10)
            assert first["type"] == "workflow_task"
            commands = [{"kind": "schedule_activity", "seq": i, "activity_type": "act",
                         "input": i} for i in range(1, 8)]
            await comm.send_json_to({"type": "workflow_task_completed", "id": "wt1",
                                     "token": first["token"], "commands": commands})
            frames = [await comm.receive_json_from(timeout=10) for _ in range(5)]
            assert [f["type"] for f in frames] == ["activity_task"] * 5
            assert frames[0]["ack"] == "wt1"
            assert await comm.receive_nothing(timeout=0.3)  # the other two wait for slots
            assert await database_sync_to_async(_states)() == [TaskState.LEASED] * 5 + [
                TaskState.READY] * 2
        finally:
            await comm.disconnect()

    asyncio.run(scenario())
