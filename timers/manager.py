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

from dispatch import notify, wakeup
from schedproject.dbthread import DbThread

from . import metrics, store
from .clock import now as clock_now
from .services import timers_fire

log = logging.getLogger("sched.timers")
BATCH = 200
MAX_SLEEP_SECONDS = 5.0
Clock = Callable[[], datetime]


def fire_due(*, term: int, clock: Clock = clock_now) -> tuple[int, list[tuple[str, str]]]:
    """Fire up to BATCH due timers. Returns how many fired and the cancel notices to send."""
    now = clock()
    due = store.due(now, BATCH)
    if not due:
        return 0, []
    fired = timers_fire(due=[(pk, execution_id) for pk, execution_id, _, _ in due], term=term,
                        clock=clock)
    details = {pk: (kind, fire_at) for pk, _, kind, fire_at in due}
    cancels: list[tuple[str, str]] = []
    for timer_id, fired_at, outcome in fired:
        # How late the manager came to it, whether or not the timer still applied.
        metrics.observe_timer_fired(*details[timer_id], fired_at)
        if outcome is not None:
            cancels.extend(outcome.cancels)
    return len(due), cancels


def next_due() -> datetime | None:
    return store.next_due()


async def run_timers(term: int, *, clock: Clock = clock_now) -> None:
    wake = asyncio.Event()
    wakeup.register(wakeup.TIMERS, wake, asyncio.get_running_loop())
    db = DbThread("timers")
    try:
        while True:
            wake.clear()
            fired, cancels = await db.run(fire_due, term=term, clock=clock)
            await notify.send_cancels(cancels, loop="timers")
            if fired >= BATCH:
                continue
            upcoming = await db.run(next_due)
            delay = MAX_SLEEP_SECONDS
            if upcoming is not None:
                delay = min(delay, max(0.0, (upcoming - clock()).total_seconds()))
            if delay > 0:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wake.wait()
    finally:
        wakeup.unregister(wakeup.TIMERS, wake)
