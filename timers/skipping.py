"""Time skipping, for the test engine only (``dispatch.testengine``; ``sdk.testing``).

A test of a workflow that sleeps for 30 days should not take 30 days. The test engine moves
its clock forward instead, the way Temporal's time-skipping test server does: whenever the
engine has nothing to do but wait for a timer, and someone wants time to pass, the clock
jumps to that timer's due time, the timer manager fires it, and the work it causes (a
workflow task, the activities it schedules) runs at the new time, in real time. Then the
next timer, in order. So a workflow's own records show 30 days passing (its ``TimerStarted``
and ``TimerFired`` events, ``ctx.now()``) while the test takes a fraction of a second.

When time moves (``TimeSkipper``):

- only while nothing is ready or leased (``dispatch.store.tasks.busy``): no workflow task
  waits for or runs on a worker, no activity is scheduled or running. While an activity runs
  the clock runs at wall speed, so its start-to-close and heartbeat timeouts mean what they
  say. A timer that is due but not yet fired holds it too: each jump ends at one due time;
- only while a client waits for a run's result (a result long poll in this engine:
  ``workflows.changes.closing_waiters``), as in Temporal, or while ``sleep(seconds)`` (the
  test environment's ``env.sleep``) has not yet reached its target. A test can therefore
  start a workflow that waits an hour for a signal, send the signal, then wait for the
  result, and the hour's timeout does not fire in between. ``auto = False`` switches off the
  first of those (``env.auto_time_skipping_disabled()``).

The clock (``timers.clock.SkewedClock``): wall time plus an offset that only grows. It
replaces ``django.utils.timezone.now`` in the test engine process, before any app is loaded,
so every reading of the time there (event timestamps, timer due times, leases, the
dashboard) agrees on it. Rejected: a skewed clock for the timer manager alone. The timer
fires on skewed time, but the workflow task it schedules is stamped (``WorkflowTaskStarted``,
which is ``ctx.now()``) by the services on wall time, 30 days before the timer fired, and
the activity timeouts the dispatcher starts on wall time are due at once on skewed time. One
clock for the whole process is the only consistent one, and threading a clock argument
through every service for a test-only feature would cost every engine something. A normal
engine never imports this module: nothing changes there, not even a function call.

Liveness across a jump: worker sessions are kept alive by when their worker was last heard
from, on the same clock, so a jump would make every connected worker look silent. The test
engine therefore runs with a lease timeout of a century (``dispatch.testengine``): a worker
that goes away still closes its socket, which hands its tasks back at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from dispatch import wakeup
from dispatch.store import tasks
from schedproject.dbthread import DbThread
from workflows import changes

from . import store
from .clock import SkewedClock

log = logging.getLogger("sched.timers")
TICK_SECONDS = 0.01


@dataclass(frozen=True)
class Snapshot:
    """What the skipper reads, in one unit of database work."""

    busy: bool
    next_due: datetime | None


def snapshot() -> Snapshot:
    return Snapshot(busy=tasks.busy(), next_due=store.next_due())


def skip_to(*, now: datetime, seen: Snapshot, waiting: bool,
            until: datetime | None) -> datetime | None:
    """Where the clock jumps to from ``now``, or None to let it run: to the next timer while
    a result is awaited (``waiting``), but no further than a sleep's target (``until``); not
    at all while a task is ready or leased, or a timer is due and not fired yet."""
    if seen.busy or (seen.next_due is not None and seen.next_due <= now):
        return None
    if not waiting and until is None:
        return None
    goal = min((t for t in (seen.next_due, until) if t is not None), default=None)
    return goal if goal is not None and goal > now else None


@dataclass
class _Sleep:
    until: datetime
    done: asyncio.Future[None] = field(repr=False)


class TimeSkipper:
    """Moves ``clock`` forward as the module's docstring says. ``run()`` on the engine's loop;
    ``sleep()`` and ``auto`` from the same loop."""

    def __init__(self, clock: SkewedClock) -> None:
        self.clock = clock
        self.auto = True
        self._sleeps: list[_Sleep] = []
        self._wake = asyncio.Event()

    async def sleep(self, seconds: float) -> datetime:
        """Return once the clock has reached ``seconds`` from now (jumping there when the
        engine is idle, running every timer due on the way in order); the time then."""
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._sleeps.append(_Sleep(self.clock.now() + timedelta(seconds=seconds), done))
        self._wake.set()
        await done
        return self.clock.now()

    async def run(self) -> None:
        db = DbThread("time-skipper")
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK_SECONDS):
                    await self._wake.wait()
            self._wake.clear()
            try:
                await self.step(db)
            except asyncio.CancelledError:
                raise
            except Exception:  # the database is busy or away: the next tick tries again
                log.warning("time skipper: a step failed", exc_info=True)

    async def step(self, db: DbThread) -> None:
        self._settle()
        waiting = self.auto and changes.closing_waiters() > 0
        until = min((s.until for s in self._sleeps), default=None)
        if not waiting and until is None:
            return  # nobody asks for time to pass: no database work either
        seen = await db.run(snapshot)
        now = self.clock.now()
        goal = skip_to(now=now, seen=seen, waiting=waiting, until=until)
        if goal is None:
            return
        self.clock.advance(goal - now)
        log.debug("time skipped by %s to %s", goal - now, goal)
        wakeup.wake(wakeup.TIMERS)
        self._settle()

    def _settle(self) -> None:
        """Answer the sleeps whose target the clock has reached."""
        now = self.clock.now()
        for s in [s for s in self._sleeps if s.until <= now]:
            self._sleeps.remove(s)
            if not s.done.done():
                s.done.set_result(None)
