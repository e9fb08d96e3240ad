"""The channel layer as configured: a consumer's receive ends when it is canceled.

Channels cancels a consumer's pending ``channel_layer.receive`` when its socket goes, and
waits for it; a receive that swallowed that cancel would keep the consumer (and its worker's
session and leases) from ever being released. With Redis, that happened when redis-py had a
socket timeout (its writes then go through ``asyncio.wait_for``, which on Python 3.11 can
return a result instead of raising the cancel that arrived with it).
"""

from __future__ import annotations

import asyncio
import random

import pytest
from channels.layers import get_channel_layer
from django.conf import settings

ROUNDS = 200


def test_a_canceled_receive_ends() -> None:
    layer = get_channel_layer()
    assert layer is not None
    if "redis" not in settings.CHANNEL_LAYERS["default"]["BACKEND"]:
        pytest.skip("the in-memory layer's receive is a queue get")

    async def rounds() -> list[int]:
        stuck: list[int] = []
        for i in range(ROUNDS):
            channel = await layer.new_channel()
            receive = asyncio.ensure_future(layer.receive(channel))
            await asyncio.sleep(random.random() * 0.02)  # anywhere in its write or its read
            receive.cancel()
            done, _ = await asyncio.wait([receive], timeout=30)
            if not done:
                stuck.append(i)
                break
        return stuck

    assert asyncio.run(rounds()) == []
