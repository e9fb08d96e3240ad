"""Unit tests of ``sdk.Worker`` against a small in-test engine speaking the websocket protocol.

``FakeEngine`` is a real websocket server on 127.0.0.1 (``websockets``), so the worker's
connection, framing, reconnection and shutdown paths run for real; only the engine's
behaviour is scripted. End-to-end tests against the real engine live elsewhere.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve

import sdk
from sdk._worker import WorkerAuthenticationError, websocket_url
from sdk.worker import collect, load_module, parse_args

HAS_RUNTIME = importlib.util.find_spec("sdk._runtime") is not None
needs_runtime = pytest.mark.skipif(not HAS_RUNTIME, reason="sdk._runtime is not written yet")

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "secret"
TIMEOUT = 5.0
ACKED = {"workflow_task_completed", "workflow_task_failed", "activity_task_completed",
         "activity_task_failed", "activity_heartbeat", "credit"}


class FakeEngine:
    """Accepts workers, welcomes them, acks what they send and records every message."""

    def __init__(self) -> None:
        self.received: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.log: list[dict[str, Any]] = []  # everything received, pings aside
        self.hellos: list[dict[str, Any]] = []
        self.connections: list[ServerConnection] = []
        self.connected = asyncio.Event()
        self.auto_ack = True
        self.cancel_requested = False  # answer heartbeats with cancel_requested
        self.reject: set[str] = set()  # message types answered with an error
        self.welcome: dict[str, Any] = {}  # more fields of the welcome frame
        self.url = ""

    @property
    def ws(self) -> ServerConnection:
        return self.connections[-1]

    async def handler(self, ws: ServerConnection) -> None:
        assert ws.request is not None
        if ws.request.headers.get("Authorization") != f"Bearer {TOKEN}":
            await ws.close(4401, "unauthorized")
            return
        hello = json.loads(await ws.recv())
        assert hello["type"] == "hello"
        self.hellos.append(hello)
        await ws.send(json.dumps({"type": "welcome", "worker_id": f"wk{len(self.hellos)}",
                                  "heartbeat_interval": 0.2, "protocol_version": 1,
                                  **self.welcome}))
        self.connections.append(ws)
        self.connected.set()
        async for frame in ws:
            msg = json.loads(frame)
            if msg["type"] == "ping":
                await ws.send(json.dumps({"type": "pong"}))
                continue
            if "id" in msg and msg["type"] in self.reject:
                await ws.send(json.dumps({"type": "error", "id": msg["id"],
                                          "code": "stale_task", "message": "rejected"}))
            elif "id" in msg and self.auto_ack and msg["type"] in ACKED:
                ack: dict[str, Any] = {"type": "ack", "id": msg["id"]}
                if msg["type"] == "activity_heartbeat" and self.cancel_requested:
                    ack["cancel_requested"] = True
                await ws.send(json.dumps(ack))
            self.log.append(msg)
            await self.received.put(msg)

    async def send(self, msg: dict[str, Any] | str) -> None:
        await self.ws.send(msg if isinstance(msg, str) else json.dumps(msg))

    async def expect(self, kind: str, within: float = TIMEOUT) -> dict[str, Any]:
        """The next message of type ``kind``, skipping others (credit, heartbeats...)."""
        return await self.expect_any((kind,), within)

    async def expect_any(self, kinds: tuple[str, ...], within: float = TIMEOUT) -> dict[str, Any]:
        async with asyncio.timeout(within):
            while True:
                msg = await self.received.get()
                if msg["type"] in kinds:
                    return msg

    async def wait_connections(self, n: int) -> None:
        await eventually(lambda: len(self.connections) >= n)


@asynccontextmanager
async def running_worker(
    *, workflows: list[Any] | None = None, activities: list[Any] | None = None,
    token: str = TOKEN, welcome: dict[str, Any] | None = None, **options: Any,
) -> AsyncIterator[tuple[FakeEngine, sdk.Worker, asyncio.Task[None]]]:
    engine = FakeEngine()
    engine.welcome = welcome or {}
    async with serve(engine.handler, "127.0.0.1", 0) as server:
        port = server.sockets[0].getsockname()[1]
        engine.url = f"http://127.0.0.1:{port}"
        worker = sdk.Worker(engine.url, token=token, task_queue="q",
                            workflows=workflows or [], activities=activities or [echo],
                            identity="test-worker", **options)
        task = asyncio.create_task(worker.run())
        try:
            if token == TOKEN:
                async with asyncio.timeout(TIMEOUT):
                    await engine.connected.wait()
            yield engine, worker, task
        finally:
            if not task.done():
                await worker.shutdown(grace=1.0)
                async with asyncio.timeout(TIMEOUT):
                    await task


async def eventually(predicate: Callable[[], bool]) -> None:
    for _ in range(int(TIMEOUT / 0.01)):
        if predicate():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("the condition never became true")


def run(scenario: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(scenario(), timeout=30))


# ---- activities used by the tests ----------------------------------------------------


@sdk.activity
def echo(ctx: sdk.ActivityContext, input: Any) -> Any:
    return {"echo": input, "attempt": ctx.info.attempt, "thread": threading.current_thread().name}


@sdk.activity(name="fail")
def failing(ctx: sdk.ActivityContext, input: Any) -> None:
    raise sdk.ApplicationError("card declined", type="Declined", non_retryable=True,
                               details={"code": 51})


@sdk.activity
def broken(ctx: sdk.ActivityContext, input: Any) -> None:
    raise KeyError("oops")


@sdk.activity
def progress(ctx: sdk.ActivityContext, input: Any) -> Any:
    seen = ctx.heartbeat_details
    for step in range(1, 4):
        ctx.heartbeat({"step": step})
    return {"previous": seen}


@sdk.activity
def patient(ctx: sdk.ActivityContext, input: Any) -> str:
    """Heartbeats until cancelled (the heartbeat raises)."""
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ctx.heartbeat()
        time.sleep(0.01)
    return "never cancelled"


@sdk.activity
def heartbeats_big(ctx: sdk.ActivityContext, details: Any) -> str:
    """Heartbeats ``details`` once, then small heartbeats until the attempt is refused."""
    ctx.heartbeat(details)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        ctx.heartbeat()
        time.sleep(0.01)
    return "never refused"


@sdk.activity
async def async_patient(ctx: sdk.ActivityContext, input: Any) -> str:
    await asyncio.sleep(TIMEOUT)
    return "never cancelled"


@sdk.activity
async def async_add(ctx: sdk.ActivityContext, input: list[int]) -> int:
    await asyncio.sleep(0)
    return sum(input)


@sdk.activity
def slow(ctx: sdk.ActivityContext, input: float) -> str:
    time.sleep(input)
    return "done"


@sdk.activity
def unserializable(ctx: sdk.ActivityContext, input: Any) -> Any:
    return object()


def activity_task(activity_type: str, input: Any = None, *, token: str = "at1",
                  **extra: Any) -> dict[str, Any]:
    return {
        "type": "activity_task", "token": token, "workflow_id": "wf", "run_id": "run",
        "workflow_type": "demo", "activity_id": "1", "activity_type": activity_type,
        "task_queue": "q", "input": input, "attempt": 1,
        "scheduled_at": "2025-01-01T00:00:00+00:00", **extra,
    }


# ---- basics --------------------------------------------------------------------------


def test_websocket_url_is_derived_from_the_engine_url() -> None:
    assert websocket_url("http://h:8000") == "ws://h:8000/ws/worker/"
    assert websocket_url("https://h/prefix/") == "wss://h/ws/worker/"
    with pytest.raises(ValueError, match="http"):
        websocket_url("h:8000")


def test_hello_announces_the_worker_and_pings_follow() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[echo, failing],
                                  max_concurrent_activities=7) as (engine, worker, _):
            hello = engine.hellos[0]
            assert hello["task_queue"] == "q"
            assert hello["activity_types"] == ["echo", "fail"]
            assert hello["workflow_types"] == []
            assert hello["max_activity_tasks"] == 7
            assert hello["identity"] == "test-worker"
            await asyncio.sleep(0.5)  # heartbeat_interval is 0.2: pings were sent
            assert worker.worker_id == "wk1"

    run(scenario)


def test_a_bad_token_stops_the_worker_with_an_authentication_error() -> None:
    async def scenario() -> None:
        async with running_worker(token="wrong") as (_, _, task):
            with pytest.raises(WorkerAuthenticationError):
                async with asyncio.timeout(TIMEOUT):
                    await task

    run(scenario)


# ---- activities ----------------------------------------------------------------------


def test_sync_activity_runs_in_the_pool_and_reports_its_result() -> None:
    async def scenario() -> None:
        async with running_worker() as (engine, _, _):
            await engine.send(activity_task("echo", {"x": 1}, attempt=2))
            done = await engine.expect("activity_task_completed")
            assert done["token"] == "at1"
            assert done["id"]
            assert done["result"]["echo"] == {"x": 1}
            assert done["result"]["attempt"] == 2
            assert done["result"]["thread"].startswith("sched-activity")

    run(scenario)


def test_async_activity_runs_on_the_loop() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[async_add]) as (engine, _, _):
            await engine.send(activity_task("async_add", [1, 2, 3]))
            assert (await engine.expect("activity_task_completed"))["result"] == 6

    run(scenario)


def test_failing_activities_report_their_failure() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[failing, broken]) as (engine, _, _):
            await engine.send(activity_task("fail", token="t1"))
            failed = await engine.expect("activity_task_failed")
            assert failed["token"] == "t1"
            assert failed["canceled"] is False
            failure = failed["failure"]
            assert failure["type"] == "Declined"
            assert failure["message"] == "card declined"
            assert failure["non_retryable"] is True
            assert failure["details"] == {"code": 51}
            assert "card declined" in failure["stack"]

            await engine.send(activity_task("broken", token="t2"))
            failed = await engine.expect("activity_task_failed")
            assert failed["failure"]["type"] == "KeyError"
            assert failed["failure"]["non_retryable"] is False

    run(scenario)


def test_unknown_activity_type_and_unserializable_result_fail_the_attempt() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[echo, unserializable]) as (engine, _, _):
            await engine.send(activity_task("nope", token="t1"))
            failed = await engine.expect("activity_task_failed")
            assert failed["failure"]["type"] == "ActivityNotRegisteredError"
            await engine.send(activity_task("unserializable", token="t2"))
            failed = await engine.expect("activity_task_failed")
            assert failed["token"] == "t2"
            assert failed["failure"]["type"] == "SerializationError"

    run(scenario)


def test_heartbeats_are_throttled_and_the_last_details_precede_the_completion() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[progress]) as (engine, _, _):
            await engine.send(activity_task("progress", heartbeat_timeout=30.0,
                                            heartbeat_details={"step": 7}))
            kinds: list[dict[str, Any]] = []
            async with asyncio.timeout(TIMEOUT):
                while not kinds or kinds[-1]["type"] != "activity_task_completed":
                    msg = await engine.received.get()
                    if msg["type"] in ("activity_heartbeat", "activity_task_completed"):
                        kinds.append(msg)
            beats = [m["details"] for m in kinds if m["type"] == "activity_heartbeat"]
            # the first goes at once; 2 is superseded inside the interval; 3 flushed at the end
            assert beats == [{"step": 1}, {"step": 3}]
            assert kinds[-1]["result"] == {"previous": {"step": 7}}
            assert all(m["id"] for m in kinds)

    run(scenario)


def test_heartbeat_details_go_out_when_the_throttle_interval_ends() -> None:
    @sdk.activity
    def two_beats(ctx: sdk.ActivityContext, input: Any) -> None:
        ctx.heartbeat("a")
        ctx.heartbeat("b")
        time.sleep(1.5)  # interval is 0.8 x 0.5 = 0.4 s: "b" is sent by the timer

    async def scenario() -> None:
        async with running_worker(activities=[two_beats]) as (engine, _, _):
            start = time.monotonic()
            await engine.send(activity_task("two_beats", heartbeat_timeout=0.5))
            first = await engine.expect("activity_heartbeat")
            second = await engine.expect("activity_heartbeat")
            elapsed = time.monotonic() - start
            assert (first.get("details"), second.get("details")) == ("a", "b")
            assert 0.3 < elapsed < 1.2  # well before the activity ends
            await engine.expect("activity_task_completed")

    run(scenario)


def test_activity_cancel_makes_the_next_heartbeat_raise() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[patient]) as (engine, _, _):
            await engine.send(activity_task("patient", heartbeat_timeout=0.1))
            await engine.expect("activity_heartbeat")
            await engine.send({"type": "activity_cancel", "token": "at1"})
            failed = await engine.expect("activity_task_failed")
            assert failed["canceled"] is True
            assert failed["failure"]["type"] == "ActivityCancelledError"

    run(scenario)


def test_cancel_requested_on_a_heartbeat_ack_cancels_the_activity() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[patient]) as (engine, _, _):
            engine.cancel_requested = True
            await engine.send(activity_task("patient", heartbeat_timeout=0.1))
            failed = await engine.expect("activity_task_failed")
            assert failed["canceled"] is True

    run(scenario)


def test_async_activities_are_cancelled_through_their_task() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[async_patient]) as (engine, _, _):
            await engine.send(activity_task("async_patient"))
            await asyncio.sleep(0.1)
            await engine.send({"type": "activity_cancel", "token": "at1"})
            failed = await engine.expect("activity_task_failed", within=2)
            assert failed["canceled"] is True

    run(scenario)


def test_activity_concurrency_is_bounded() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[slow], max_concurrent_activities=2) as (
            engine, _, _
        ):
            start = time.monotonic()
            for i in range(4):
                await engine.send(activity_task("slow", 0.3, token=f"t{i}"))
            for _ in range(4):
                await engine.expect("activity_task_completed")
            assert time.monotonic() - start >= 0.55  # two rounds of 0.3 s

    run(scenario)


# ---- robustness ----------------------------------------------------------------------


def test_malformed_frames_do_not_kill_the_worker() -> None:
    async def scenario() -> None:
        async with running_worker() as (engine, _, task):
            await engine.send("this is not json")
            await engine.send("[1, 2]")
            await engine.send({"type": "bogus"})
            await engine.send({"type": "activity_task", "token": "x"})  # missing fields
            await engine.send({"type": "ack", "id": "unknown"})
            await engine.send({"type": "error", "code": "boom", "message": "engine says no"})
            await engine.send({"type": "activity_cancel", "token": "nobody"})
            await engine.send(activity_task("echo", "still alive"))
            done = await engine.expect("activity_task_completed")
            assert done["result"]["echo"] == "still alive"
            assert not task.done()
            assert len(engine.connections) == 1

    run(scenario)


def test_the_worker_reconnects_when_the_engine_drops_the_connection() -> None:
    async def scenario() -> None:
        async with running_worker() as (engine, _, _):
            await engine.ws.close(1011, "engine restarting")
            await engine.wait_connections(2)
            assert len(engine.hellos) == 2
            await engine.send(activity_task("echo", "again"))
            assert (await engine.expect("activity_task_completed"))["result"]["echo"] == "again"

    run(scenario)


def test_unacked_completions_are_sent_again_after_a_reconnect() -> None:
    async def scenario() -> None:
        async with running_worker() as (engine, worker, _):
            engine.auto_ack = False
            await engine.send(activity_task("echo", "once"))
            first = await engine.expect("activity_task_completed")
            await engine.ws.close(1011, "lost")
            engine.auto_ack = True
            await engine.wait_connections(2)
            again = await engine.expect("activity_task_completed")
            assert again == first
            await eventually(lambda: not worker._unacked)

    run(scenario)


def test_a_task_frame_s_ack_acknowledges_the_completion_it_names() -> None:
    """The worker says ``acks_on_tasks``; the engine then acknowledges a completion on the
    next task frame it sends (``ack``), and the worker treats that as the ``ack``."""
    async def scenario() -> None:
        async with running_worker() as (engine, worker, _):
            assert engine.hellos[0]["acks_on_tasks"] is True
            engine.auto_ack = False
            await engine.send(activity_task("echo", "first"))
            first = await engine.expect("activity_task_completed")
            assert first["id"] in worker._unacked
            await engine.send({**activity_task("echo", "second", token="at2"), "ack": first["id"]})
            second = await engine.expect("activity_task_completed")
            assert first["id"] not in worker._unacked  # acknowledged by the task frame
            assert second["id"] in worker._unacked  # and this one waits for its own
            await engine.send({"type": "ack", "id": second["id"]})
            await eventually(lambda: not worker._unacked)

    run(scenario)


def test_shutdown_sends_zero_credit_and_lets_activities_finish() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[slow]) as (engine, worker, task):
            await engine.send(activity_task("slow", 0.3))
            await asyncio.sleep(0.05)
            shutdown = asyncio.create_task(worker.shutdown(grace=5))
            credit = await engine.expect("credit")
            assert (credit["max_workflow_tasks"], credit["max_activity_tasks"]) == (0, 0)
            done = await engine.expect("activity_task_completed")
            assert done["result"] == "done"
            async with asyncio.timeout(TIMEOUT):
                await shutdown
                await task
            assert task.result() is None

    run(scenario)


def test_shutdown_gives_up_on_activities_after_the_grace_period() -> None:
    async def scenario() -> None:
        async with running_worker(activities=[async_patient]) as (engine, worker, task):
            await engine.send(activity_task("async_patient"))
            await asyncio.sleep(0.05)
            start = time.monotonic()
            await worker.shutdown(grace=0.3)
            async with asyncio.timeout(TIMEOUT):
                await task
            assert time.monotonic() - start < 2

    run(scenario)


# ---- workflow tasks (need the runtime) -----------------------------------------------


@sdk.workflow
async def greeter(ctx: sdk.WorkflowContext, name: str) -> str:
    greeting = await ctx.execute_activity(echo, name)
    return f"hi {greeting['echo']}"


@sdk.workflow
async def immediate(ctx: sdk.WorkflowContext, input: Any) -> Any:
    return input


@sdk.workflow
async def crashes(ctx: sdk.WorkflowContext, input: Any) -> Any:
    raise RuntimeError("workflow bug")


NOW = "2025-01-01T00:00:00+00:00"


def event(event_id: int, event_type: str, **attributes: Any) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": event_type, "timestamp": NOW,
            "attributes": attributes}


def first_events(workflow_type: str, input: Any) -> list[dict[str, Any]]:
    return [
        event(1, "WorkflowExecutionStarted", workflow_type=workflow_type, task_queue="q",
              input=input, execution_timeout_ms=None, parent=None, continued_from_run_id=None),
        event(2, "WorkflowTaskScheduled", task_queue="q", attempt=1),
        event(3, "WorkflowTaskStarted", scheduled_event_id=2, attempt=1, worker="wk1"),
    ]


def after_activity(result: Any) -> list[dict[str, Any]]:
    """Events 4..9: the first task completed, the activity ran, a second task started."""
    return [
        event(4, "WorkflowTaskCompleted", scheduled_event_id=2, started_event_id=3, worker="wk1"),
        event(5, "ActivityTaskScheduled", seq=1, activity_type="echo", task_queue="q",
              input="Ada", retry_policy=None, schedule_to_close_ms=None,
              schedule_to_start_ms=None, start_to_close_ms=None, heartbeat_ms=None),
        event(6, "ActivityTaskStarted", scheduled_event_id=5, seq=1, attempt=1, worker="wk1"),
        event(7, "ActivityTaskCompleted", scheduled_event_id=5, seq=1, result=result),
        event(8, "WorkflowTaskScheduled", task_queue="q", attempt=1),
        event(9, "WorkflowTaskStarted", scheduled_event_id=8, attempt=1, worker="wk1"),
    ]


def workflow_task(workflow_type: str, events: list[dict[str, Any]], *, token: str = "wt1",
                  run_id: str = "run1") -> dict[str, Any]:
    return {"type": "workflow_task", "token": token, "workflow_id": "wf1", "run_id": run_id,
            "workflow_type": workflow_type, "task_queue": "q", "attempt": 1,
            "first_event_id": events[0]["event_id"], "events": events}


@needs_runtime
def test_a_workflow_task_is_activated_and_completed() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[immediate]) as (engine, worker, _):
            await engine.send(workflow_task("immediate", first_events("immediate", [1, 2])))
            done = await engine.expect("workflow_task_completed")
            assert done["token"] == "wt1"
            assert done["commands"] == [{"kind": "complete_workflow", "result": [1, 2]}]
            assert "run1" not in worker._cache  # the run closed

    run(scenario)


@needs_runtime
def test_sticky_tasks_reuse_the_cached_instance() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[greeter]) as (engine, worker, _):
            await engine.send(workflow_task("greeter", first_events("greeter", "Ada")))
            done = await engine.expect("workflow_task_completed")
            assert [c["kind"] for c in done["commands"]] == ["schedule_activity"]
            assert done["commands"][0]["activity_type"] == "echo"
            assert worker._cache["run1"].next_event_id == 4

            await engine.send(workflow_task("greeter", after_activity({"echo": "Ada"}),
                                            token="wt2"))
            done = await engine.expect("workflow_task_completed")
            assert done["token"] == "wt2"
            assert done["commands"] == [{"kind": "complete_workflow", "result": "hi Ada"}]
            assert all(m["type"] != "history_request" for m in engine.log)

    run(scenario)


@needs_runtime
def test_a_sticky_miss_asks_for_the_whole_history() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[greeter]) as (engine, _, _):
            await engine.send(workflow_task("greeter", after_activity({"echo": "Bo"}),
                                            token="wt9"))
            request = await engine.expect("history_request")
            assert request["token"] == "wt9"
            events = first_events("greeter", "Bo") + after_activity({"echo": "Bo"})
            await engine.send({"type": "history", "token": "wt9", "events": events,
                               "id": request.get("id")})
            done = await engine.expect("workflow_task_completed")
            assert done["token"] == "wt9"
            assert done["commands"] == [{"kind": "complete_workflow", "result": "hi Bo"}]

    run(scenario)


@needs_runtime
def test_an_engine_error_on_a_completion_drops_the_cached_run() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[greeter]) as (engine, worker, _):
            engine.reject = {"workflow_task_completed"}
            await engine.send(workflow_task("greeter", first_events("greeter", "Ada")))
            await engine.expect("workflow_task_completed")
            await eventually(lambda: "run1" not in worker._cache)
            engine.reject = set()
            await engine.send(workflow_task("greeter", after_activity({"echo": "Ada"}),
                                            token="wt2"))
            assert (await engine.expect("history_request"))["token"] == "wt2"

    run(scenario)


def warnings_about(caplog: pytest.LogCaptureFixture, run_id: str) -> list[str]:
    """The worker's WARNING lines about one run."""
    return [r.getMessage() for r in caplog.records
            if r.name == "sched.worker" and r.levelno == logging.WARNING
            and getattr(r, "run_id", None) == run_id]


@needs_runtime
def test_a_bug_in_workflow_code_fails_the_task_and_is_logged(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sched.worker")

    async def scenario() -> None:
        async with running_worker(workflows=[crashes, immediate]) as (engine, worker, task):
            await engine.send(workflow_task("crashes", first_events("crashes", None)))
            failed = await engine.expect_any(("workflow_task_completed", "workflow_task_failed"))
            assert failed["type"] == "workflow_task_failed"  # not the run: a fail_workflow
            assert failed["cause"] == "workflow_error"
            assert failed["failure"]["type"] == "RuntimeError"
            assert failed["failure"]["message"] == "workflow bug"
            assert "run1" not in worker._cache
            await engine.send(workflow_task("nope", first_events("nope", None), token="wt2",
                                            run_id="run2"))
            failed = await engine.expect("workflow_task_failed")
            assert failed["token"] == "wt2"
            assert failed["cause"] == "unknown_workflow_type"
            assert not task.done()

    run(scenario)
    [line] = warnings_about(caplog, "run1")
    assert "wf1" in line and "run1" in line and "workflow_error" in line
    assert "RuntimeError: workflow bug" in line
    assert 'raise RuntimeError("workflow bug")' in line  # where it was raised
    assert "unknown_workflow_type" in warnings_about(caplog, "run2")[0]


@needs_runtime
def test_the_worker_s_failure_exception_types_fail_the_run() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[crashes],
                                  workflow_failure_exception_types=[RuntimeError]) as (
                engine, _, _):
            await engine.send(workflow_task("crashes", first_events("crashes", None)))
            done = await engine.expect_any(("workflow_task_completed", "workflow_task_failed"))
            assert [c["kind"] for c in done["commands"]] == ["fail_workflow"]
            assert done["commands"][0]["failure"]["type"] == "RuntimeError"

    run(scenario)
    with pytest.raises(TypeError, match="exception classes"):
        sdk.Worker("http://e", token="t", workflows=[crashes],
                   workflow_failure_exception_types=["RuntimeError"])  # type: ignore[list-item]


@needs_runtime
def test_a_stale_task_the_engine_refuses_is_logged_at_debug_only(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sched.worker")

    async def scenario() -> None:
        async with running_worker(workflows=[immediate, crashes]) as (engine, _, _):
            engine.reject = {"workflow_task_completed", "workflow_task_failed"}
            await engine.send(workflow_task("immediate", first_events("immediate", 1)))
            await engine.expect("workflow_task_completed")
            await engine.send(workflow_task("crashes", first_events("crashes", None),
                                            token="wt2", run_id="run2"))
            await engine.expect("workflow_task_failed")
            await eventually(lambda: sum("stale_task" in r.getMessage()
                                         for r in caplog.records) == 2)

    run(scenario)
    assert warnings_about(caplog, "run1") == []
    assert ["workflow_error" in line for line in warnings_about(caplog, "run2")] == [True]
    assert all(r.levelno == logging.DEBUG for r in caplog.records
               if "stale_task" in r.getMessage())


def test_a_cancelled_activity_s_stale_completion_is_logged_at_debug_only(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="sched.worker")

    def refusals() -> list[logging.LogRecord]:
        return [r for r in caplog.records if r.name == "sched.worker"
                and "engine rejected" in r.getMessage() and "stale_task" in r.getMessage()]

    async def scenario() -> None:
        async with running_worker(activities=[patient, echo]) as (engine, _, _):
            # The engine cancels the activity (its run was terminated) and has dropped its
            # lease: the heartbeats and the cancelled completion are stale, as expected.
            await engine.send(activity_task("patient", heartbeat_timeout=0.1))
            await engine.expect("activity_heartbeat")
            engine.reject = {"activity_heartbeat", "activity_task_failed"}
            await engine.send({"type": "activity_cancel", "token": "at1"})
            assert (await engine.expect("activity_task_failed"))["canceled"] is True
            await eventually(lambda: any("completion" in r.getMessage() for r in refusals()))
            assert all(r.levelno == logging.DEBUG for r in refusals())
            # A completion refused without a cancel (its attempt timed out) still warns.
            engine.reject = {"activity_task_completed"}
            await engine.send(activity_task("echo", "x", token="at2"))
            await engine.expect("activity_task_completed")
            await eventually(lambda: any(r.levelno == logging.WARNING for r in refusals()))

    run(scenario)


@needs_runtime
def test_the_worker_checks_what_it_sends_against_the_limit_the_engine_announced() -> None:
    limit = 4096

    async def scenario() -> None:
        async with running_worker(workflows=[immediate], activities=[echo, heartbeats_big],
                                  welcome={"max_payload_bytes": limit}) as (engine, _, _):
            await engine.send(activity_task("echo", "x" * 2 * limit))
            failed = await engine.expect_any(("activity_task_completed", "activity_task_failed"))
            await engine.send(activity_task("heartbeats_big", "y" * 2 * limit, token="at2"))
            done = await engine.expect_any(("activity_task_completed", "activity_task_failed"))
            await engine.send(workflow_task("immediate", first_events("immediate", "z" * limit)))
            task = await engine.expect_any(("workflow_task_completed", "workflow_task_failed"))
            await engine.send(activity_task("echo", "small", token="at3"))
            small = await engine.expect_any(("activity_task_completed", "activity_task_failed"))
            sent = list(engine.log)

        # Nothing over the limit went out: each such item failed with payload_too_large.
        assert (failed["type"], failed["failure"]["type"]) == (
            "activity_task_failed", "payload_too_large")
        assert "result" in failed["failure"]["message"]
        assert str(limit) in failed["failure"]["message"]
        assert (done["type"], done["failure"]["type"]) == ("activity_task_failed",
                                                            "payload_too_large")
        assert "heartbeat" in done["failure"]["message"]
        assert (task["type"], task["cause"]) == ("workflow_task_failed", "payload_too_large")
        assert (small["type"], small["result"]["echo"]) == ("activity_task_completed", "small")
        assert all(len(json.dumps(m)) <= limit for m in sent)

    run(scenario)


BLOCKED = threading.Event()


@sdk.workflow
async def blocks(ctx: sdk.WorkflowContext, seconds: float) -> Any:
    BLOCKED.wait(seconds)  # the line a deadlock names
    return "woke up"


BLOCKING_LINE = next(i for i, line in enumerate(Path(__file__).read_text().splitlines(), 1)
                     if "BLOCKED.wait(seconds)" in line and "the line" in line)


@needs_runtime
def test_workflow_code_that_does_not_yield_fails_its_task_and_others_go_on(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="sched.worker")
    BLOCKED.clear()

    async def scenario() -> None:
        async with running_worker(workflows=[blocks, immediate], deadlock_timeout=1.0) as (
                engine, worker, task):
            await engine.send(workflow_task("blocks", first_events("blocks", 30)))
            await engine.send(workflow_task("immediate", first_events("immediate", "hi"),
                                            token="wt2", run_id="run2"))
            answers = [await engine.expect_any(("workflow_task_completed",
                                                "workflow_task_failed"), within=15)
                       for _ in range(2)]
            # The unrelated run was served while the other one's thread was blocked.
            assert [(a["type"], a["token"]) for a in answers] == [
                ("workflow_task_completed", "wt2"), ("workflow_task_failed", "wt1")]
            failed = answers[1]
            assert failed["cause"] == "deadlock_detected"
            failure = failed["failure"]
            assert failure["type"] == "DeadlockError"
            where = f"test_worker_unit.py:{BLOCKING_LINE} in blocks"
            assert "'blocks'" in failure["message"] and where in failure["message"]
            assert failure["details"]["location"].endswith(where)
            assert "BLOCKED.wait(seconds)" in failure["stack"]
            assert "run1" not in worker._cache and not worker._workflow_runs
            assert not task.done()
            # The next attempt replays in a new thread (the blocked one is abandoned).
            BLOCKED.set()
            await engine.send(workflow_task("blocks", first_events("blocks", 30), token="wt3"))
            done = await engine.expect("workflow_task_completed", within=15)
            assert done["commands"] == [{"kind": "complete_workflow", "result": "woke up"}]

    run(scenario)
    [line] = warnings_about(caplog, "run1")
    assert "deadlock_detected" in line and "wf1" in line and "blocks" in line


def test_the_deadlock_timeout_is_an_option_and_a_cli_flag() -> None:
    with pytest.raises(ValueError, match="deadlock_timeout"):
        sdk.Worker("http://e", token="t", workflows=[immediate], deadlock_timeout=0)
    args = parse_args(["--engine", "http://e", "--token", "t", "--deadlock-timeout", "0.5", "m"])
    assert args.deadlock_timeout == 0.5
    assert parse_args(["--engine", "http://e", "--token", "t", "m"]).deadlock_timeout == 2.0


# ---- the CLI -------------------------------------------------------------------------


def test_the_sdk_imports_no_django() -> None:
    code = ("import sys, sdk, sdk.worker, fixtures.demo_workflows; "
            "sys.exit(any(m == 'django' or m.startswith('django.') for m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=False).returncode == 0


def test_the_cli_collects_the_demo_module() -> None:
    module = load_module("fixtures.demo_workflows")
    workflows, activities = collect([module])
    assert sorted(w.__sched_workflow__.name for w in workflows) == [
        "approval", "hello", "long_sleep", "order"]
    assert sorted(a.__sched_activity__.name for a in activities) == [
        "charge_payment", "greet", "reserve_inventory", "ship_order"]


def test_the_cli_reads_its_defaults_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHED_ENGINE_URL", "http://e:1")
    monkeypatch.setenv("SCHED_TOKEN", "tok")
    args = parse_args(["--task-queue", "q2", "--max-activities", "3", "a.b", "c.py"])
    assert (args.engine, args.token, args.task_queue, args.max_activities) == (
        "http://e:1", "tok", "q2", 3)
    assert args.modules == ["a.b", "c.py"]


def test_the_cli_serves_a_file_module_and_stops_on_sigterm(tmp_path: Path) -> None:
    module = tmp_path / "my_acts.py"
    module.write_text(
        "import sdk\n\n@sdk.activity\ndef shout(ctx, s):\n    return s.upper()\n"
    )

    async def scenario() -> None:
        engine = FakeEngine()
        async with serve(engine.handler, "127.0.0.1", 0) as server:
            port = server.sockets[0].getsockname()[1]
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "sdk.worker", "--task-queue", "q", str(module),
                cwd=ROOT, env={**os.environ, "SCHED_ENGINE_URL": f"http://127.0.0.1:{port}",
                               "SCHED_TOKEN": TOKEN},
            )
            try:
                async with asyncio.timeout(15):
                    await engine.connected.wait()
                assert engine.hellos[0]["activity_types"] == ["shout"]
                await engine.send(activity_task("shout", "hey"))
                assert (await engine.expect("activity_task_completed"))["result"] == "HEY"
                proc.send_signal(signal.SIGTERM)
                await engine.expect("credit")
                async with asyncio.timeout(TIMEOUT):
                    assert await proc.wait() == 0
            finally:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    run(scenario)


def test_the_activation_threads_replace_a_stuck_one_and_end_when_idle() -> None:
    from sdk._activations import _Threads

    threads = _Threads(idle_seconds=0.2, name="test-threads")
    stuck = threading.Event()
    ran: list[str] = []

    def block() -> None:
        stuck.wait()  # does not return while the test runs

    threads.submit(block)

    def job(name: str, done: threading.Event) -> Callable[[], None]:
        def run() -> None:
            ran.append(name)
            done.set()
        return run

    for name in ("a", "b", "c"):
        done = threading.Event()
        threads.submit(job(name, done))
        assert done.wait(TIMEOUT)
    assert ran == ["a", "b", "c"]  # served beside the stuck thread, one after the other

    def ours() -> list[threading.Thread]:
        return [t for t in threading.enumerate() if t.name == "test-threads"]

    assert all(t.daemon for t in ours())
    deadline = time.monotonic() + TIMEOUT
    while len(ours()) > 1:  # the idle ones end; the stuck one is left
        assert time.monotonic() < deadline, "idle threads did not end"
        time.sleep(0.05)
    stuck.set()


# ---- eager workflow tasks ----------------------------------------------------------------


@sdk.workflow
async def twice(ctx: sdk.WorkflowContext, name: str) -> list[Any]:
    first = await ctx.execute_activity(echo, name)
    second = await ctx.execute_activity(echo, first["echo"] + "!")
    return [first["echo"], second["echo"]]


def twice_activity(seq: int, input: Any, *, token: str, ack: str,
                   ack_events: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Activity ``seq`` of ``twice`` on run1, acknowledging the completion ``ack``."""
    frame = {**activity_task("echo", input, token=token), "workflow_id": "wf1",
             "run_id": "run1", "workflow_type": "twice", "activity_id": str(seq), "ack": ack}
    if ack_events is not None:
        frame["ack_events"] = ack_events
    return frame


def scheduled(event_id: int, seq: int, input: Any) -> dict[str, Any]:
    return event(event_id, "ActivityTaskScheduled", seq=seq, activity_type="echo",
                 task_queue="q", input=input, retry_policy=None, schedule_to_close_ms=None,
                 schedule_to_start_ms=None, start_to_close_ms=None, heartbeat_ms=None)


def first_ack_events() -> list[dict[str, Any]]:
    """What the completion of ``twice``'s first task appended: its ack's events."""
    return [event(4, "WorkflowTaskCompleted", scheduled_event_id=2, started_event_id=3,
                  worker="wk1"), scheduled(5, 1, "Ada")]


async def first_activity_done(engine: FakeEngine, workflow: str = "twice") -> dict[str, Any]:
    """Run ``twice``'s (or ``workflow``'s) first task, then its first activity, the
    completion's ack (with its events) riding on the activity's frame; the activity's
    completion frame."""
    engine.auto_ack = False
    await engine.send(workflow_task(workflow, first_events(workflow, "Ada")))
    done = await engine.expect("workflow_task_completed")
    await engine.send({**twice_activity(1, "Ada", token="at1", ack=done["id"],
                                        ack_events=first_ack_events()),
                       "workflow_type": workflow})
    return await engine.expect("activity_task_completed")


@sdk.workflow
async def mutates(ctx: sdk.WorkflowContext, name: str) -> Any:
    first = await ctx.execute_activity(echo, name)
    first["echo"] = "changed by the workflow"
    first[1] = "a key that is not a string"
    return await ctx.execute_activity(echo, [first["echo"], sorted(map(str, first))])


@needs_runtime
def test_what_the_eager_task_does_to_the_result_is_not_what_is_recorded() -> None:
    """The workflow code gets the result as the history holds it (JSON: string keys), and a
    copy: changing it changes neither the result sent nor a later replay."""
    async def scenario() -> None:
        async with running_worker(workflows=[mutates],
                                  welcome={"eager_workflow_tasks": True}) as (engine, _, _):
            completed = await first_activity_done(engine, "mutates")
            assert completed["result"]["echo"] == "Ada"
            assert set(completed["result"]) == {"echo", "attempt", "thread"}
            [command] = completed["workflow_task"]["commands"]
            assert command["input"] == ["changed by the workflow",
                                        ["1", "attempt", "echo", "thread"]]

    run(scenario)


@needs_runtime
def test_the_task_after_an_activity_runs_eagerly_once_the_ack_brought_the_events() -> None:
    """The ack of the first task's completion carries the events it appended; the worker then
    runs the next task on the activity's result and sends its commands with the result."""
    async def scenario() -> None:
        async with running_worker(workflows=[twice],
                                  welcome={"eager_workflow_tasks": True}) as (engine, worker, _):
            assert engine.hellos[0]["eager_workflow_tasks"] is True
            completed = await first_activity_done(engine)
            assert completed["result"]["echo"] == "Ada"
            proposal = completed["workflow_task"]
            assert proposal["first_event_id"] == 6
            [command] = proposal["commands"]
            assert (command["kind"], command["seq"], command["input"]) == (
                "schedule_activity", 2, "Ada!")
            # The task's start is the workflow's time: it is stamped by the worker, now.
            assert proposal["started_at"] > NOW
            # The copy is cached once the engine took the task: its ack brings the events.
            assert "run1" not in worker._cache
            await engine.send({"type": "ack", "id": completed["id"], "events": [
                event(10, "WorkflowTaskCompleted", scheduled_event_id=8, started_event_id=9,
                      worker="wk1"), scheduled(11, 2, "Ada!")]})
            await eventually(lambda: "run1" in worker._cache
                             and worker._cache["run1"].next_event_id == 12)
            assert worker._cache["run1"].eager_ready

    run(scenario)


@needs_runtime
def test_a_refused_eager_task_drops_the_copy_and_the_task_replays() -> None:
    """The engine took the result alone (an ack without events): the worker's copy ran a task
    that did not count, so the task sent as usual replays the history."""
    async def scenario() -> None:
        async with running_worker(workflows=[twice],
                                  welcome={"eager_workflow_tasks": True}) as (engine, worker, _):
            completed = await first_activity_done(engine)
            assert "workflow_task" in completed
            # News came first (a signal, event 6): the result is events 7.., the task 9..10.
            usual = [
                event(6, "WorkflowExecutionSignaled", signal_name="noise", input=None),
                event(7, "ActivityTaskStarted", scheduled_event_id=5, seq=1, attempt=1,
                      worker="wk1"),
                event(8, "ActivityTaskCompleted", scheduled_event_id=5, seq=1,
                      result=completed["result"]),
                event(9, "WorkflowTaskScheduled", task_queue="q", attempt=1),
                event(10, "WorkflowTaskStarted", scheduled_event_id=9, attempt=1, worker="wk1"),
            ]
            await engine.send({**workflow_task("twice", usual, token="wt2"),
                               "ack": completed["id"]})
            request = await engine.expect("history_request")
            assert request["token"] == "wt2"
            assert "run1" not in worker._cache
            history = [*first_events("twice", "Ada"), *first_ack_events(), *usual]
            await engine.send({"type": "history", "token": "wt2", "events": history,
                               "id": request.get("id")})
            again = await engine.expect("workflow_task_completed")
            [command] = again["commands"]
            assert (command["kind"], command["seq"]) == ("schedule_activity", 2)

    run(scenario)


@needs_runtime
def test_without_the_engine_s_word_no_task_runs_eagerly() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[twice]) as (engine, _, _):
            completed = await first_activity_done(engine)
            assert "workflow_task" not in completed

    run(scenario)
