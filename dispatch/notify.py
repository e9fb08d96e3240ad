"""Sending messages to worker connections, wherever they are served, over the channel layer.

A task message crosses the channel layer as JSON text it already is (``encode``), with its
token and type beside it for the consumer's count of held leases: channels-redis packs
events with msgpack, which takes no integer of 2**64 or more, while a run's payload may hold
any number JSON can write (and PostgreSQL's jsonb gives ``1e20`` back as an integer). So no
payload can make a delivery unsendable, and a delivery that fails anyway (a full channel, a
lost Redis) is logged with its run's ids and counted, and takes no other delivery with it.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from . import metrics
from .store import sessions

log = logging.getLogger("sched.dispatch")
DELIVER = "task.deliver"
CANCEL = "task.cancel"


def encode(message: dict[str, Any]) -> dict[str, str]:
    """A task message as it crosses the channel layer: ``{"type", "token", "workflow_id",
    "run_id", "text"}``, ``text`` the frame to send."""
    return {"type": message["type"], "token": message["token"],
            "workflow_id": message.get("workflow_id", ""), "run_id": message.get("run_id", ""),
            "text": json.dumps(message, separators=(",", ":"))}


def deliver_event(messages: Sequence[dict[str, Any]], **extra: Any) -> dict[str, Any]:
    """The channel-layer event that carries ``messages`` to one worker connection."""
    return {"type": DELIVER, "frames": [encode(m) for m in messages], **extra}


def runs_of(messages: Sequence[dict[str, Any]]) -> str:
    """The runs of ``messages``, for a log line: ``workflow_id/run_id`` each."""
    return ", ".join(f"{m.get('workflow_id', '?')}/{m.get('run_id', '?')}" for m in messages)


async def deliver(deliveries: Iterable[tuple[str, dict[str, Any]]], *,
                  loop: str = "dispatcher") -> None:
    """Send task messages, grouped per worker connection. A group that cannot be sent is
    logged and counted; its leases time out and the tasks go back to the queue."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for channel, message in deliveries:
        grouped[channel].append(message)
    layer = get_channel_layer()
    assert layer is not None
    for channel, messages in grouped.items():
        try:
            await layer.send(channel, deliver_event(messages))
        except Exception:
            metrics.item_failed(loop)
            log.exception("could not deliver %d tasks to %s (runs %s); their leases will "
                          "time out", len(messages), channel, runs_of(messages))


_channels = database_sync_to_async(sessions.channels)


async def send_cancels(cancels: list[tuple[str, str]], *, loop: str = "dispatcher") -> None:
    """Tell the workers holding these activity leases that the activities were canceled."""
    if not cancels:
        return
    channels = await _channels(sorted({worker for worker, _ in cancels}))
    layer = get_channel_layer()
    assert layer is not None
    for worker, token in cancels:
        if worker in channels:
            try:
                await layer.send(channels[worker], {"type": CANCEL, "token": token})
            except Exception:
                metrics.item_failed(loop)
                log.exception("could not tell worker %s that activity %s was canceled",
                              worker, token.split(".")[0])
