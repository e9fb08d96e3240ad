"""Starting and stopping the singleton loops beside the ASGI server, or alone."""

from __future__ import annotations

import asyncio
import functools
import logging

from schedproject import config
from timers.manager import run_timers

from . import wakeup
from .dispatcher import run_dispatcher
from .leader import LeaderElection, ShardBalance
from .store import leadership

log = logging.getLogger("sched.loops")


def elections(*, dispatcher: bool = True, timers: bool = True) -> list[LeaderElection]:
    out = []
    if dispatcher:
        out.extend(_dispatch_elections())
    if timers:
        out.append(LeaderElection("timers", "timers", run_timers))
    return out


def _dispatch_elections() -> list[LeaderElection]:
    """One election per dispatch shard (``SCHED_DISPATCH_SHARDS``), balanced over the
    engines when there are several shards."""
    shards = leadership.shards()
    if len(shards) == 1:
        return [LeaderElection(shards[0].name, wakeup.DISPATCH, run_dispatcher)]
    balance = ShardBalance(len(shards), config.get().leader_check_seconds)
    return [LeaderElection(shard.name, wakeup.shard_name(shard.index, shard.count),
                           functools.partial(run_dispatcher, shard=shard),
                           wake_names=(wakeup.DISPATCH,), shard=shard.index, balance=balance)
            for shard in shards]


def start(loop: asyncio.AbstractEventLoop, *, dispatcher: bool = True,
          timers: bool = True) -> list[asyncio.Task[None]]:
    """Schedule the loops on ``loop`` (the server's event loop), restarting one that fails."""
    return [loop.create_task(_supervise(e), name=f"sched-{e.name}-election")
            for e in elections(dispatcher=dispatcher, timers=timers)]


async def _supervise(election: LeaderElection) -> None:
    while True:
        try:
            await election.run()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s loop failed; restarting in 1 s", election.name)
        await asyncio.sleep(1.0)


async def run_forever(*, dispatcher: bool = True, timers: bool = True) -> None:
    await asyncio.gather(*start(asyncio.get_running_loop(), dispatcher=dispatcher,
                                timers=timers))


async def stop(tasks: list[asyncio.Task[None]], *, within: float) -> None:
    """Cancel the loops' tasks and wait (at most ``within`` seconds) for them to end: each
    election closes its dedicated connection on the way out, which releases its lock."""
    for task in tasks:
        task.cancel()
    if tasks:
        await asyncio.wait(tasks, timeout=within)
