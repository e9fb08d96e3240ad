"""A worker socket's session and leases when frames between the engine's parts are lost: a
task frame the channel layer never delivered, a channel layer that fails under a socket."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone
from prometheus_client import REGISTRY
from rest_framework.test import APIClient

from dispatch import lessees, notify
from dispatch import services as dispatch
from dispatch.models import Task, TaskKind, TaskState, WorkerSession

from .test_start_handoff import QUEUE, _start, _tick, _workflow_task, connect_worker


def _activity_task() -> Task:
    return Task.objects.get(kind=TaskKind.ACTIVITY)


def _reclaim() -> int:
    return dispatch.reclaim(now=timezone.now())


@pytest.mark.django_db(transaction=True)
def test_an_activity_whose_frame_was_lost_is_not_kept_by_the_workers_pings(
        api_client: APIClient, settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, lease_timeout_seconds=1.0)

    async def scenario() -> None:
        comm = await connect_worker(max_workflow_tasks=1, max_activity_tasks=0)
        try:
            await database_sync_to_async(_start)(api_client, "lost")
            task = await comm.receive_json_from(timeout=10)
            await comm.send_json_to({"type": "workflow_task_completed", "id": "1",
                                     "token": task["token"], "commands": [
                                         {"kind": "schedule_activity", "seq": 1,
                                          "activity_type": "act"}]})
            assert (await comm.receive_json_from(timeout=10))["type"] == "ack"
            await comm.send_json_to({"type": "credit", "id": "2", "max_workflow_tasks": 1,
                                     "max_activity_tasks": 5})
            assert (await comm.receive_json_from(timeout=10))["type"] == "ack"
            # The dispatcher leases the activity to this worker; its frame is lost on the way.
            deliveries = await database_sync_to_async(_tick)()
            assert [m["type"] for _, m in deliveries] == ["activity_task"]
            # The worker stays alive and keeps pinging, past the lease timeout.
            for n in range(12):
                await comm.send_json_to({"type": "ping", "id": f"p{n}"})
                assert (await comm.receive_json_from(timeout=10))["type"] == "pong"
                await asyncio.sleep(0.25)
            assert await database_sync_to_async(_reclaim)() == 1
            row = await database_sync_to_async(_activity_task)()
            assert row.state == TaskState.READY  # back in the queue, for a worker to get it
            # The worker itself is alive and keeps its session.
            assert await database_sync_to_async(WorkerSession.objects.count)() == 1
        finally:
            await comm.disconnect()

    asyncio.run(scenario())


class LayerFailure(ConnectionError):
    pass


@pytest.mark.django_db(transaction=True)
def test_a_channel_layer_failing_under_a_socket_hands_its_leases_back_at_once(
        api_client: APIClient, monkeypatch: pytest.MonkeyPatch) -> None:
    layer = get_channel_layer()
    assert layer is not None
    receive = layer.receive
    failing = asyncio.Event()

    async def receive_or_fail(channel: str) -> Any:
        message = await receive(channel)
        if failing.is_set():  # as channels-redis does when Redis goes away
            raise LayerFailure("the channel layer went away")
        return message

    monkeypatch.setattr(layer, "receive", receive_or_fail)

    async def scenario() -> None:
        comm = await connect_worker(max_workflow_tasks=2)
        await database_sync_to_async(_start)(api_client, "held")
        task = await comm.receive_json_from(timeout=10)
        assert task["type"] == "workflow_task"
        [session] = await database_sync_to_async(list)(WorkerSession.objects.all())
        failing.set()
        await layer.send(session.channel_name, {"type": "task.cancel", "token": "nothing"})
        with pytest.raises(LayerFailure):
            await comm.wait(timeout=10)

    asyncio.run(scenario())
    # The consumer is gone without a websocket.disconnect: its session, its lease and its
    # place among this process's lessees went with it, and the task is scheduled again.
    assert WorkerSession.objects.count() == 0
    assert lessees._workers == {}
    row = _workflow_task("held")
    assert row.state == TaskState.READY and row.task_queue == QUEUE
    assert [m["workflow_id"] for _, m in _tick()] == []  # no live worker left to take it


@pytest.mark.django_db(transaction=True)
def test_a_start_slot_whose_frame_never_arrives_lapses(settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, workflow_task_timeout_seconds=0.5)

    async def scenario() -> None:
        comm = await connect_worker(max_workflow_tasks=1)
        try:
            assert lessees.reserve(task_queue=QUEUE, workflow_type="T") is not None
            # Its frame is lost on the way: the worker's one slot stays taken meanwhile ...
            assert lessees.reserve(task_queue=QUEUE, workflow_type="T") is None
            # ... until the lease it was taken for would have timed out.
            await asyncio.sleep(0.7)
            assert lessees.reserve(task_queue=QUEUE, workflow_type="T") is not None
        finally:
            await comm.disconnect()

    asyncio.run(scenario())


def test_a_delivery_that_cannot_be_sent_is_counted_and_the_others_go_out(
        caplog: pytest.LogCaptureFixture) -> None:
    layer = get_channel_layer()
    assert layer is not None

    def message(run: str) -> dict[str, Any]:
        return {"type": "workflow_task", "token": f"{run}.1", "workflow_id": run,
                "run_id": f"{run}-run"}

    async def scenario() -> tuple[float, dict[str, Any]]:
        good = await layer.new_channel()
        before = REGISTRY.get_sample_value("sched_item_errors_total",
                                           {"loop": "dispatcher"}) or 0
        # A channel name the layer refuses: its send raises, as a broken connection's would.
        await notify.deliver([("not a channel!", message("bad")), (good, message("good"))])
        return before, await asyncio.wait_for(layer.receive(good), timeout=10)

    before, event = asyncio.run(scenario())
    assert [frame["workflow_id"] for frame in event["frames"]] == ["good"]
    assert REGISTRY.get_sample_value("sched_item_errors_total",
                                     {"loop": "dispatcher"}) == before + 1
    [line] = [r.getMessage() for r in caplog.records if "could not deliver" in r.getMessage()]
    assert "bad/bad-run" in line and "good" not in line
