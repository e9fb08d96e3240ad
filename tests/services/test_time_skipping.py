"""Time skipping for the test engine (``timers.clock``, ``timers.skipping``): where the clock
may jump (a pure rule, checked with hypothesis) and what the skipper reads of the database."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from timers import store as timers
from timers.clock import SkewedClock
from timers.skipping import Snapshot, skip_to, snapshot
from workflows import changes
from workflows.services import workflow_start, workflow_task_complete

from .conftest import QUEUE, WORKFLOW, Worker, activity, workflow_task

NOW = datetime(2030, 1, 1, tzinfo=UTC)
moments = st.none() | st.integers(-10**6, 10**8).map(lambda s: NOW + timedelta(seconds=s))


@given(busy=st.booleans(), next_due=moments, waiting=st.booleans(), until=moments)
def test_the_clock_only_jumps_forward_to_the_next_timer_or_a_sleeps_end(
        busy: bool, next_due: datetime | None, waiting: bool, until: datetime | None) -> None:
    goal = skip_to(now=NOW, seen=Snapshot(busy, next_due), waiting=waiting, until=until)
    if goal is None:
        return
    assert goal > NOW
    assert not busy  # never while work is pending
    assert waiting or until is not None  # only when asked
    assert next_due is None or next_due > NOW  # never past a due timer not yet fired
    assert goal == min(t for t in (next_due, until) if t is not None)


def test_the_rule_in_words() -> None:
    timer = NOW + timedelta(days=30)
    idle = Snapshot(busy=False, next_due=timer)
    assert skip_to(now=NOW, seen=idle, waiting=True, until=None) == timer
    assert skip_to(now=NOW, seen=idle, waiting=False, until=None) is None  # nobody waits
    assert skip_to(now=NOW, seen=idle, waiting=False, until=NOW + timedelta(days=1)) == (
        NOW + timedelta(days=1))  # a sleep stops short of the timer ...
    assert skip_to(now=NOW, seen=idle, waiting=False, until=NOW + timedelta(days=40)) == timer
    assert skip_to(now=NOW, seen=Snapshot(busy=True, next_due=timer), waiting=True,
                   until=None) is None  # ... and nothing moves while a task is out
    assert skip_to(now=NOW, seen=Snapshot(busy=False, next_due=None), waiting=True,
                   until=None) is None  # nothing to skip to


def test_a_skewed_clock_runs_with_the_wall_and_only_moves_forward() -> None:
    wall = [NOW]
    clock = SkewedClock(lambda: wall[0])
    clock.advance(timedelta(days=2))
    clock.advance(timedelta(days=-5))  # ignored
    wall[0] += timedelta(seconds=1)
    assert clock.now() == NOW + timedelta(days=2, seconds=1)
    assert clock.offset == timedelta(days=2)


@pytest.mark.django_db
def test_the_skipper_reads_pending_tasks_and_the_next_timer(worker: Worker) -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="skip")
    assert snapshot().busy  # the first workflow task is ready
    token = workflow_task(run)["token"]
    assert snapshot().busy  # ... and leased
    workflow_task_complete(token=token, worker_id=worker.worker_id, commands=[
        {"kind": "start_timer", "seq": 1, "duration_ms": 86_400_000}])
    seen = snapshot()
    assert not seen.busy and seen.next_due == timers.next_due() and seen.next_due is not None
    assert seen.next_due - run.created_at >= timedelta(days=1)


@pytest.mark.django_db
def test_an_activity_scheduled_holds_time(worker: Worker) -> None:
    run = workflow_start(workflow_type=WORKFLOW, task_queue=QUEUE, workflow_id="skip-act")
    workflow_task_complete(token=workflow_task(run)["token"], worker_id=worker.worker_id,
                           commands=[activity(1)])
    assert snapshot().busy


def test_result_waiters_are_counted_and_history_waiters_are_not() -> None:
    def count(**watch: Any) -> int:
        with changes.watch(1, **watch), changes.watch(2, closing_only=True):
            return changes.closing_waiters()

    assert changes.closing_waiters() == 0
    assert count(closing_only=True) == 2
    assert count() == 1  # a history long poll waits for any commit, not for a close
    assert changes.closing_waiters() == 0
