"""The worker sockets' database threads: a lane's units run one at a time, in order, on
whichever thread is free, and a canceled caller does not cut its unit short nor let the
next one overtake it."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from schedproject.dbthread import DbPool


async def _a_lanes_units_run_in_order_one_at_a_time() -> None:
    pool = DbPool("test-order", 3)
    lane = pool.lane()
    seen: list[int] = []
    running = threading.Semaphore(1)

    def unit(i: int) -> int:
        assert running.acquire(blocking=False), "two units of one lane ran at once"
        try:
            time.sleep(0.002)
            seen.append(i)
            return i
        finally:
            running.release()

    results = await asyncio.gather(*(lane.run(unit, i) for i in range(20)))
    assert results == list(range(20))
    assert seen == list(range(20))


async def _lanes_run_side_by_side() -> None:
    pool = DbPool("test-parallel", 2)
    both = threading.Barrier(2, timeout=5)

    def unit() -> str:
        both.wait()  # only returns once the other lane's unit runs too
        return threading.current_thread().name

    names = await asyncio.gather(pool.lane().run(unit), pool.lane().run(unit))
    assert len(set(names)) == 2


async def _a_canceled_caller_does_not_cut_its_unit_short_nor_let_the_next_overtake() -> None:
    pool = DbPool("test-cancel", 2)
    lane = pool.lane()
    release = threading.Event()
    seen: list[str] = []

    def slow() -> None:
        release.wait(5)
        seen.append("slow")

    def after() -> str:
        seen.append("after")
        return "after"

    waiter = asyncio.ensure_future(lane.run(slow))
    await asyncio.sleep(0.05)
    waiter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiter
    following = asyncio.ensure_future(lane.run(after))
    await asyncio.sleep(0.05)
    assert seen == []  # the next unit waits for the one still running
    release.set()
    assert await following == "after"
    assert seen == ["slow", "after"]


async def _an_error_reaches_the_caller_and_the_lane_goes_on() -> None:
    lane = DbPool("test-error", 1).lane()

    def fail() -> None:
        raise ValueError("no")

    with pytest.raises(ValueError, match="no"):
        await lane.run(fail)
    assert await lane.run(lambda: 7) == 7


def test_a_lanes_units_run_in_order_one_at_a_time() -> None:
    asyncio.run(_a_lanes_units_run_in_order_one_at_a_time())


def test_lanes_run_side_by_side() -> None:
    asyncio.run(_lanes_run_side_by_side())


def test_a_canceled_caller_does_not_cut_its_unit_short_nor_let_the_next_overtake() -> None:
    asyncio.run(_a_canceled_caller_does_not_cut_its_unit_short_nor_let_the_next_overtake())


def test_an_error_reaches_the_caller_and_the_lane_goes_on() -> None:
    asyncio.run(_an_error_reaches_the_caller_and_the_lane_goes_on())
