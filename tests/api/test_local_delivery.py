"""Task frames for a worker connected to this engine process go to its socket directly, not
through the channel layer (``dispatch.notify.send``); other channels still go through it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.layers import get_channel_layer
from django.utils import timezone
from rest_framework.test import APIClient

from dispatch import notify
from dispatch import services as dispatch
from dispatch.leader import _new_term

from .test_start_handoff import _start, connect_worker


def _tick() -> list[tuple[str, dict[str, Any]]]:
    return dispatch.dispatch_tick(now=timezone.now(), term=_new_term("dispatcher"))


@pytest.fixture
def layer_sends(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The channel layer's sends, refused: what reaches a worker did not cross it."""
    layer = get_channel_layer()
    assert layer is not None
    sent: list[str] = []

    async def refuse(channel: str, message: dict[str, Any]) -> None:
        sent.append(channel)
        raise RuntimeError("the channel layer is not used for a local worker")

    monkeypatch.setattr(layer, "send", refuse)
    return sent


@pytest.mark.django_db(transaction=True)
def test_a_local_worker_gets_its_tasks_without_the_channel_layer(
        api_client: APIClient, layer_sends: list[str]) -> None:
    async def scenario() -> None:
        comm = await connect_worker(max_workflow_tasks=1)
        try:
            # The start hands the first task over in its transaction, sent after commit.
            await database_sync_to_async(_start)(api_client, "handed")
            task = await comm.receive_json_from(timeout=10)
            assert (task["type"], task["workflow_id"]) == ("workflow_task", "handed")
            # The worker is full: the next start's task waits for the dispatcher, whose
            # delivery goes to the socket directly too once the slot is free.
            await database_sync_to_async(_start)(api_client, "dispatched")
            await comm.send_json_to({"type": "workflow_task_completed", "id": "1",
                                     "token": task["token"],
                                     "commands": [{"kind": "complete_workflow"}]})
            assert (await comm.receive_json_from(timeout=10))["type"] == "ack"
            deliveries = await database_sync_to_async(_tick)()
            await notify.deliver(deliveries)
            task = await comm.receive_json_from(timeout=10)
            assert (task["type"], task["workflow_id"]) == ("workflow_task", "dispatched")
        finally:
            await comm.disconnect()
        assert notify._local == {}  # a socket that went is no longer served locally

    asyncio.run(scenario())
    assert layer_sends == []


def test_a_channel_this_process_does_not_serve_goes_over_the_layer(
        layer_sends: list[str]) -> None:
    with pytest.raises(RuntimeError):
        asyncio.run(notify.send("elsewhere.abc!def", {"type": notify.CANCEL, "token": "t"}))
    assert layer_sends == ["elsewhere.abc!def"]
