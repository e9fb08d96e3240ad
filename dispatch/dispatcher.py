"""The dispatcher: leases ready tasks to connected workers that have room for them.

It sleeps until woken (a transaction that made a task ready commits, a worker connects or
frees a slot) or until ``SCHED_DISPATCH_POLL_SECONDS`` pass, then runs ticks until a tick
leases less than a full batch. Ticks are at least ``MIN_TICK_INTERVAL_SECONDS`` apart, so
under load one tick serves many wake-ups. Each tick is one transaction (``services.dispatch_tick``),
fenced by the leader term. Expired leases and silent workers are reclaimed about once a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from django.utils import timezone

from schedproject import config
from schedproject.dbthread import DbThread

from . import notify, services, wakeup
from .store import NotLeader, Shard
from .store.leadership import ONLY

log = logging.getLogger("sched.dispatcher")
BATCH = 200
RECLAIM_EVERY_SECONDS = 1.0
MIN_TICK_INTERVAL_SECONDS = 0.01


async def run_dispatcher(term: int, shard: Shard = ONLY) -> None:
    """Lead ``shard`` (the only one by default): lease its runs' ready tasks; shard 0 also
    reclaims silent workers and expired leases."""
    wake = asyncio.Event()
    names = {wakeup.DISPATCH, wakeup.shard_name(shard.index, shard.count)}
    for name in names:
        wakeup.register(name, wake, asyncio.get_running_loop())
    poll = config.get().dispatch_poll_seconds
    db = DbThread("dispatcher" if shard.index == 0 else f"dispatcher-{shard.index}")
    last_reclaim = 0.0
    leading_since = timezone.now()
    try:
        while True:
            wake.clear()
            if (shard.index == 0
                    and time.monotonic() - last_reclaim >= RECLAIM_EVERY_SECONDS):
                last_reclaim = time.monotonic()
                await db.run(services.reclaim, now=timezone.now(), term=term,
                             leading_since=leading_since)
            tick_started = time.monotonic()
            deliveries = await db.run(services.dispatch_tick, now=timezone.now(), term=term,
                                      batch=BATCH, shard=shard)
            if deliveries:
                await notify.deliver(deliveries)
            if len(deliveries) >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(poll):
                    await wake.wait()
            # Under load wake-ups come faster than ticks are worth: let a few gather.
            # An idle dispatcher (the common case for one start) is not held back.
            since = time.monotonic() - tick_started
            if since < MIN_TICK_INTERVAL_SECONDS:
                await asyncio.sleep(MIN_TICK_INTERVAL_SECONDS - since)
    except NotLeader:
        log.warning("%s: lost leadership (term %d)", shard.name, term)
        raise
    finally:
        for name in names:
            wakeup.unregister(name, wake)
