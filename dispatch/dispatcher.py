"""The dispatcher: leases ready tasks to connected workers that have room for them.

It sleeps until woken (a transaction that made a task ready commits, a worker connects or
frees a slot) or until ``SCHED_DISPATCH_POLL_SECONDS`` pass, then runs ticks until a tick
leases less than a full batch. Each tick is one transaction (``services.dispatch_tick``),
fenced by the leader term. Expired leases and silent workers are reclaimed about once a
second.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from channels.db import database_sync_to_async
from django.conf import settings
from django.utils import timezone

from . import notify, services, wakeup
from .fencing import NotLeader

log = logging.getLogger("sched.dispatcher")
BATCH = 200
RECLAIM_EVERY_SECONDS = 1.0


async def run_dispatcher(term: int) -> None:
    wake = asyncio.Event()
    wakeup.register(wakeup.DISPATCH, wake, asyncio.get_running_loop())
    poll = settings.SCHED.dispatch_poll_seconds
    last_reclaim = 0.0
    try:
        while True:
            wake.clear()
            if time.monotonic() - last_reclaim >= RECLAIM_EVERY_SECONDS:
                last_reclaim = time.monotonic()
                await database_sync_to_async(services.reclaim)(now=timezone.now())
            deliveries = await database_sync_to_async(services.dispatch_tick)(
                now=timezone.now(), term=term, batch=BATCH)
            if deliveries:
                await notify.deliver(deliveries)
            if len(deliveries) >= BATCH:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(wake.wait(), timeout=poll)
    except NotLeader:
        log.warning("dispatcher: lost leadership (term %d)", term)
        raise
    finally:
        wakeup.unregister(wakeup.DISPATCH, wake)
