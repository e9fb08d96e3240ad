"""The timer manager: fires due timers, each in its own transaction.

It sleeps until the next timer is due, or until woken because a transaction created a timer
(which may be sooner), or at most ``MAX_SLEEP_SECONDS``. Due timers are taken in batches
(``SKIP LOCKED`` inside ``timer_fire``), each firing fenced by the leader term. Everything a
timer needs is in its row, so a restart loses no wake-up: the new leader fires whatever is
due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import datetime

from channels.db import database_sync_to_async
from django.utils import timezone

from dispatch import notify, wakeup
from schedproject import metrics
from workflows.services import timer_fire

from .models import Timer

log = logging.getLogger("sched.timers")
BATCH = 200
MAX_SLEEP_SECONDS = 5.0
Clock = Callable[[], datetime]


def fire_due(*, term: int, clock: Clock = timezone.now) -> tuple[int, list[tuple[str, str]]]:
    """Fire up to BATCH due timers. Returns how many fired and the cancel notices to send."""
    now = clock()
    due = list(Timer.objects.filter(fire_at__lte=now).order_by("fire_at", "id")
               .values_list("pk", "kind", "fire_at")[:BATCH])
    cancels: list[tuple[str, str]] = []
    for timer_id, kind, fire_at in due:
        fired_at = clock()
        outcome = timer_fire(timer_id=timer_id, now=fired_at, term=term)
        # How late the manager came to it, whether or not the timer still applied.
        metrics.observe_timer_fired(kind, fire_at, fired_at)
        if outcome is not None:
            cancels.extend(outcome.cancels)
    return len(due), cancels


def next_due() -> datetime | None:
    return Timer.objects.order_by("fire_at").values_list("fire_at", flat=True).first()


async def run_timers(term: int, *, clock: Clock = timezone.now) -> None:
    wake = asyncio.Event()
    wakeup.register(wakeup.TIMERS, wake, asyncio.get_running_loop())
    try:
        while True:
            wake.clear()
            fired, cancels = await database_sync_to_async(fire_due)(term=term, clock=clock)
            await notify.send_cancels(cancels)
            if fired >= BATCH:
                continue
            upcoming = await database_sync_to_async(next_due)()
            delay = MAX_SLEEP_SECONDS
            if upcoming is not None:
                delay = min(delay, max(0.0, (upcoming - clock()).total_seconds()))
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(wake.wait(), timeout=delay)
    finally:
        wakeup.unregister(wakeup.TIMERS, wake)
