"""Sending messages to worker connections, wherever they are served, over the channel layer.

A task message crosses the channel layer as JSON text it already is (``encode``), with its
token and type beside it for the consumer's count of held leases: channels-redis packs
events with msgpack, which takes no integer of 2**64 or more, while a run's payload may hold
any number JSON can write (and PostgreSQL's jsonb gives ``1e20`` back as an integer). So no
payload can make a delivery unsendable, and a delivery that fails anyway (a full channel, a
lost Redis) is logged with its run's ids and counted, and takes no other delivery with it.

A connection served by this very process, on the sender's event loop, is sent to directly
(``send``): the event is handed to its consumer's ``dispatch`` as the channel layer would
hand it, without the round trips through Redis (a send, the receiver's blocking pop, the
clean-up of its backup queue) and their serialization. That is the common case: the
dispatcher and the REST start hand most tasks to workers connected to their own engine.
Sends to one connection stay in the order they are made. A consumer is served locally from
its hello until it goes (``serve_locally``, ``stop_serving_locally``).

Process state: ``_local`` (channel name -> the consumer serving it, and its loop), written and
read on the server's event loop.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import defaultdict
from collections.abc import Iterable, Sequence
from typing import Any, Protocol

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from . import metrics
from .store import sessions

log = logging.getLogger("sched.dispatch")
DELIVER = "task.deliver"
CANCEL = "task.cancel"


class LocalConsumer(Protocol):
    """A consumer of this process, as ``send`` hands it an event."""

    async def dispatch(self, message: dict[str, Any]) -> None: ...


_local: dict[str, tuple[LocalConsumer, asyncio.AbstractEventLoop]] = {}


def serve_locally(channel_name: str, consumer: LocalConsumer) -> None:
    """Events for ``channel_name`` sent from this process go to ``consumer`` directly. Call
    on the consumer's event loop."""
    _local[channel_name] = (consumer, asyncio.get_running_loop())


def stop_serving_locally(channel_name: str, consumer: LocalConsumer) -> None:
    served = _local.get(channel_name)
    if served is not None and served[0] is consumer:
        del _local[channel_name]


async def send(channel_name: str, event: dict[str, Any]) -> None:
    """Send ``event`` to the connection of ``channel_name``: to its consumer directly when this
    process serves it on this loop, else over the channel layer."""
    served = _local.get(channel_name)
    if served is not None and served[1] is asyncio.get_running_loop():
        await served[0].dispatch(event)
        return
    layer = get_channel_layer()
    assert layer is not None
    await layer.send(channel_name, event)


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
    for channel, messages in grouped.items():
        try:
            await send(channel, deliver_event(messages))
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
    for worker, token in cancels:
        if worker in channels:
            try:
                await send(channels[worker], {"type": CANCEL, "token": token})
            except Exception:
                metrics.item_failed(loop)
                log.exception("could not tell worker %s that activity %s was canceled",
                              worker, token.split(".")[0])
