"""Sending messages to worker connections, wherever they are served, over the channel layer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from typing import Any

from channels.db import database_sync_to_async
from channels.layers import get_channel_layer

from .store import sessions

DELIVER = "task.deliver"
CANCEL = "task.cancel"


async def deliver(deliveries: Iterable[tuple[str, dict[str, Any]]]) -> None:
    """Send task messages, grouped per worker connection."""
    grouped: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for channel, message in deliveries:
        grouped[channel].append(message)
    layer = get_channel_layer()
    assert layer is not None
    for channel, messages in grouped.items():
        await layer.send(channel, {"type": DELIVER, "messages": messages})


_channels = database_sync_to_async(sessions.channels)


async def send_cancels(cancels: list[tuple[str, str]]) -> None:
    """Tell the workers holding these activity leases that the activities were canceled."""
    if not cancels:
        return
    channels = await _channels(sorted({worker for worker, _ in cancels}))
    layer = get_channel_layer()
    assert layer is not None
    for worker, token in cancels:
        if worker in channels:
            await layer.send(channels[worker], {"type": CANCEL, "token": token})
