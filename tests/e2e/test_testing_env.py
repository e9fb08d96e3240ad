"""``sdk.testing``: the test environment's engine process, time skipping, and replaying the
histories it records.

Times are asserted on what the runs recorded (their events, ``ctx.now()``); the wall clock
only bounds the waits, generously.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

import sdk
from sdk.testing import EngineExited, EnvironmentWorker, Replayer, WorkflowEnvironment

DAY = timedelta(days=1)
calls: list[str] = []
calls_lock = threading.Lock()


@sdk.activity(name="kit.record")
def record(ctx: sdk.ActivityContext, what: str) -> str:
    with calls_lock:
        calls.append(what)
    return f"recorded {what}"


@sdk.activity(name="kit.slow")
def slow(ctx: sdk.ActivityContext, seconds: float) -> str:
    time.sleep(seconds)
    return "done"


@sdk.workflow(name="kit.month")
async def month(ctx: sdk.WorkflowContext, who: str) -> dict[str, Any]:
    started = ctx.now()
    await ctx.sleep(timedelta(days=30))
    told = await ctx.execute_activity(record, who, start_to_close_timeout=10)
    return {"told": told, "slept": (ctx.now() - started).total_seconds()}


@sdk.workflow(name="kit.nap")
async def nap(ctx: sdk.WorkflowContext, days: int) -> str:
    await ctx.sleep(timedelta(days=days))
    return str(await ctx.execute_activity(record, f"woke after {days}",
                                          start_to_close_timeout=10))


@sdk.workflow(name="kit.busy")
async def busy(ctx: sdk.WorkflowContext, seconds: float) -> str:
    """An hour's timer beside an activity that takes ``seconds`` of real time and must finish
    within 30 s of its start: time must not skip while it runs (a jump would go to that
    timeout, the next timer due, and fail the activity)."""
    timer = asyncio.ensure_future(ctx.sleep(3600))
    done = await ctx.execute_activity(slow, seconds, start_to_close_timeout=30,
                                      retry_policy=sdk.RetryPolicy(maximum_attempts=1))
    await timer
    return str(done)


@sdk.workflow(name="kit.ack")
async def ack(ctx: sdk.WorkflowContext, timeout_days: int) -> Any:
    try:
        sig = await ctx.wait_for_signal("ack", timeout=timedelta(days=timeout_days))
    except TimeoutError:
        return "no answer"
    return sig.input


@sdk.workflow(name="kit.month")
async def month_changed(ctx: sdk.WorkflowContext, who: str) -> dict[str, Any]:
    """``month`` as someone changed it after runs were recorded: an activity before the sleep."""
    await ctx.execute_activity(record, "first", start_to_close_timeout=10)
    await ctx.sleep(timedelta(days=30))
    return {}


WORKFLOWS = [month, nap, busy, ack]
ACTIVITIES = [record, slow]


def at(event: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(str(event["timestamp"]))


def first(events: list[dict[str, Any]], event_type: str) -> dict[str, Any]:
    return next(e for e in events if e["event_type"] == event_type)


@pytest.fixture(scope="module")
def env() -> Iterator[WorkflowEnvironment]:
    with WorkflowEnvironment.start_time_skipping_sync() as e:
        yield e


def run_async(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, timeout=120))


def test_a_30_day_sleep_completes_at_once_on_skipped_time(env: WorkflowEnvironment) -> None:
    async def scenario() -> tuple[Any, list[dict[str, Any]], float]:
        async with env.worker(task_queue="kit-month", workflows=WORKFLOWS,
                              activities=ACTIVITIES):
            started = time.monotonic()
            handle = await env.client.start_workflow(month, "ann", task_queue="kit-month")
            result = await handle.result(timeout=60)
            return result, await handle.history(), time.monotonic() - started

    result, events, wall = run_async(scenario())
    assert result["told"] == "recorded ann"
    assert result["slept"] >= 30 * 86400
    start, fired = at(first(events, "WorkflowExecutionStarted")), at(first(events, "TimerFired"))
    timer = first(events, "TimerStarted")
    assert datetime.fromisoformat(timer["attributes"]["fire_at"]) - at(timer) == 30 * DAY
    assert 30 * DAY <= fired - start < 30 * DAY + timedelta(minutes=1)
    assert wall < 60  # far less in practice; bounded only so a stuck clock fails


def test_timers_of_several_workflows_fire_in_order(env: WorkflowEnvironment) -> None:
    calls.clear()

    async def scenario() -> list[list[dict[str, Any]]]:
        async with env.worker(task_queue="kit-order", workflows=WORKFLOWS,
                              activities=ACTIVITIES):
            handles = [await env.client.start_workflow(nap, days, task_queue="kit-order")
                       for days in (3, 1, 2)]
            results = await asyncio.gather(*(h.result(timeout=60) for h in handles))
            assert results == ["recorded woke after 3", "recorded woke after 1",
                               "recorded woke after 2"]
            return [await h.history() for h in handles]

    histories = run_async(scenario())
    assert calls == ["woke after 1", "woke after 2", "woke after 3"]
    for days, events in zip((3, 1, 2), histories, strict=True):
        fired = at(first(events, "TimerFired")) - at(first(events, "WorkflowExecutionStarted"))
        assert days * DAY <= fired < days * DAY + timedelta(minutes=1)


def test_time_waits_while_an_activity_runs(env: WorkflowEnvironment) -> None:
    async def scenario() -> tuple[str, list[dict[str, Any]]]:
        async with env.worker(task_queue="kit-busy", workflows=WORKFLOWS,
                              activities=ACTIVITIES):
            handle = await env.client.start_workflow(busy, 0.5, task_queue="kit-busy")
            return await handle.result(timeout=60), await handle.history()

    result, events = run_async(scenario())
    assert result == "done"  # its start-to-close timeout did not fire on skipped time
    # (ActivityTaskStarted is written with the outcome, as in Temporal: count from scheduled.)
    ran = at(first(events, "ActivityTaskCompleted")) - at(first(events, "ActivityTaskScheduled"))
    assert timedelta(seconds=0.5) <= ran < timedelta(seconds=30)
    fired = at(first(events, "TimerFired")) - at(first(events, "WorkflowExecutionStarted"))
    assert timedelta(hours=1) <= fired < timedelta(hours=1, minutes=1)


def test_a_signal_sent_before_waiting_for_the_result_arrives(env: WorkflowEnvironment) -> None:
    with env.worker(task_queue="kit-ack", workflows=WORKFLOWS, activities=ACTIVITIES):
        client = env.sync_client
        answered = client.start_workflow(ack, 1, task_queue="kit-ack")
        answered.signal("ack", "yes")
        assert answered.result(timeout=60) == "yes"
        silent = client.start_workflow(ack, 7, task_queue="kit-ack")
        assert silent.result(timeout=60) == "no answer"
        events = silent.history()
    waited = at(first(events, "TimerFired")) - at(first(events, "WorkflowExecutionStarted"))
    assert 7 * DAY <= waited < 7 * DAY + timedelta(minutes=1)


def test_sleep_skips_time_by_hand_and_runs_what_comes_due(env: WorkflowEnvironment) -> None:
    with env.worker(task_queue="kit-sleep", workflows=WORKFLOWS, activities=ACTIVITIES):
        before = env.current_time()
        handle = env.sync_client.start_workflow(nap, 2, task_queue="kit-sleep")
        env.sleep_sync(3 * 86400)  # no result wait: the sleep alone moves the clock
        assert env.current_time() - before >= 3 * DAY
        assert handle.describe()["status"] == "completed"
        assert handle.result(timeout=10) == "recorded woke after 2"
        events = handle.history()
    fired = at(first(events, "TimerFired")) - at(first(events, "WorkflowExecutionStarted"))
    assert 2 * DAY <= fired < 2 * DAY + timedelta(minutes=1)  # on its time, not the sleep's end


def test_auto_time_skipping_can_be_disabled(env: WorkflowEnvironment) -> None:
    with env.worker(task_queue="kit-auto", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = env.sync_client.start_workflow(nap, 1, task_queue="kit-auto")
        with env.auto_time_skipping_disabled(), pytest.raises(TimeoutError):
            handle.result(timeout=1.5)
        assert handle.result(timeout=60) == "recorded woke after 1"


def test_replayer_matches_the_recorded_history_and_catches_changed_code(
        env: WorkflowEnvironment) -> None:
    with env.worker(task_queue="kit-replay", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = env.sync_client.start_workflow(month, "bob", task_queue="kit-replay")
        handle.result(timeout=60)
    pages: list[dict[str, Any]] = []
    after = 0
    with httpx.Client(base_url=env.url, headers={"Authorization": f"Bearer {env.token}"}) as http:
        while True:  # GET .../history, page by page, the pages' events joined
            page = http.get(f"/api/workflows/{handle.workflow_id}/history",
                            params={"after": after, "limit": 3}).json()
            pages.extend(page["events"])
            if page["next_after"] is None:
                break
            after = page["next_after"]
    assert pages == handle.history() and len(pages) > 3
    Replayer([month]).replay(pages, workflow_id=handle.workflow_id)
    Replayer([month]).replay({"workflow_id": handle.workflow_id, "events": pages})
    with pytest.raises(sdk.NonDeterminismError, match=r"kit\.record"):
        Replayer([month_changed]).replay(pages)


def test_the_replayer_takes_the_history_of_an_open_run(env: WorkflowEnvironment) -> None:
    with env.worker(task_queue="kit-open", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = env.sync_client.start_workflow(ack, 7, task_queue="kit-open")
        deadline = time.monotonic() + 60
        while not any(e["event_type"] == "TimerStarted" for e in handle.history()):
            assert time.monotonic() < deadline, "the run did not start its timer"
            time.sleep(0.05)  # nobody waits for its result: no time passes on the engine
        history = handle.history()
        assert handle.describe()["status"] == "running"
        Replayer([ack]).replay(history)
        handle.signal("ack", "late")
        assert handle.result(timeout=60) == "late"


def test_the_pytest_fixture_is_a_time_skipping_environment(
        workflow_environment: WorkflowEnvironment) -> None:
    assert workflow_environment.supports_time_skipping
    with workflow_environment.worker(task_queue="kit-fixture", workflows=WORKFLOWS,
                                     activities=ACTIVITIES):
        handle = workflow_environment.sync_client.start_workflow(nap, 10,
                                                                 task_queue="kit-fixture")
        assert handle.result(timeout=60) == "recorded woke after 10"


def test_local_environment_runs_on_wall_time() -> None:
    async def scenario() -> None:
        async with await WorkflowEnvironment.start_local() as local:
            assert not local.supports_time_skipping
            before = await local.get_current_time()
            await local.sleep(0.3)
            assert await local.get_current_time() - before >= timedelta(seconds=0.3)
            async with local.worker(task_queue="kit-local", workflows=WORKFLOWS,
                                    activities=ACTIVITIES):
                handle = await local.client.start_workflow(ack, 1, task_queue="kit-local")
                await handle.signal("ack", "here")
                assert await handle.result(timeout=60) == "here"

    run_async(scenario())


def test_the_engine_keeps_to_its_own_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    """A user's project has settings, a database and a Redis of its own: none reaches the
    test engine."""
    monkeypatch.setenv("DJANGO_SETTINGS_MODULE", "someone_elses_project.settings")
    monkeypatch.setenv("DATABASE_URL", "postgres://nobody@127.0.0.1:1/not_here")
    monkeypatch.setenv("REDIS_URL", "redis://127.0.0.1:1/0")
    monkeypatch.setenv("SCHED_LEASE_TIMEOUT_SECONDS", "not a number")
    with WorkflowEnvironment.start_time_skipping_sync() as isolated, isolated.worker(
            task_queue="kit-iso", workflows=WORKFLOWS, activities=ACTIVITIES):
        handle = isolated.sync_client.start_workflow(nap, 1, task_queue="kit-iso")
        assert handle.result(timeout=60) == "recorded woke after 1"


def test_an_engine_that_cannot_start_says_why() -> None:
    with pytest.raises(EngineExited, match="SCHED_MAX_PAYLOAD_BYTES"):
        WorkflowEnvironment.start_time_skipping_sync(
            env={"SCHED_MAX_PAYLOAD_BYTES": "lots"})


ORPHAN = """
import sys, time
from sdk.testing import WorkflowEnvironment
env = WorkflowEnvironment.start_time_skipping_sync()
print(env._engine.popen.pid, flush=True)
time.sleep(120)
"""


def test_the_engine_goes_away_with_the_test_process() -> None:
    parent = subprocess.Popen([sys.executable, "-c", ORPHAN], stdout=subprocess.PIPE,
                              text=True)
    try:
        assert parent.stdout is not None
        child = int(parent.stdout.readline())
        parent.kill()
        parent.wait(timeout=30)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and _alive(child):
            time.sleep(0.1)
        assert not _alive(child)
    finally:
        if parent.poll() is None:
            parent.kill()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie (exited, not yet reaped by init) counts as gone.
    with contextlib.suppress(OSError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False


def test_a_worker_that_cannot_connect_fails_the_block(env: WorkflowEnvironment) -> None:
    from sdk._worker import WorkerAuthenticationError

    refused = EnvironmentWorker(sdk.Worker(env.url, token="not-a-token", task_queue="kit-no",
                                           workflows=WORKFLOWS))
    with pytest.raises(WorkerAuthenticationError), refused:
        pass

    async def scenario() -> None:
        with pytest.raises(WorkerAuthenticationError):
            async with EnvironmentWorker(sdk.Worker(env.url, token="not-a-token",
                                                    workflows=WORKFLOWS)):
                pass

    run_async(scenario())


@pytest.mark.anyio
@pytest.mark.parametrize("who", ["dee", "eve"])  # two tests, two event loops, one engine
async def test_async_tests_share_the_session_environment(
        workflow_environment: WorkflowEnvironment, who: str) -> None:
    env = workflow_environment
    async with env.worker(task_queue=f"kit-async-{who}", workflows=WORKFLOWS,
                          activities=ACTIVITIES):
        handle = await env.client.start_workflow(month, who, task_queue=f"kit-async-{who}")
        assert (await handle.result(timeout=60))["told"] == f"recorded {who}"
