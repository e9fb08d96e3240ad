"""Local activities: run by the worker inside the workflow task, recorded as markers.

The runtime half is driven by ``EngineSim`` (the engine's own decide functions), which plays
the worker's part of running the local activities a paused activation hands it; the worker
half runs against the in-test websocket engine of ``test_worker_unit``.
"""

from __future__ import annotations

import asyncio
import json
import threading
from typing import Any

import pytest

import sdk
from sdk._runtime import LocalActivityOutcome, WorkflowInstance, replay_history
from sdk._workflow import workflow_definition
from sdk.protocol import LOCAL_ACTIVITY_MARKER
from workflows.core.state import Status

from .test_runtime import EngineSim, history_types
from .test_worker_unit import event, first_events, running_worker, workflow_task
from .test_worker_unit import run as run_async

FAST = sdk.RetryPolicy(initial_interval=0.01, backoff_coefficient=2.0, maximum_interval=0.05)


def local_sim(fn: Any, input: Any = None, *, sticky: bool = True,
              local: dict[str, Any] | None = None,
              activities: dict[str, Any] | None = None) -> EngineSim:
    sim = EngineSim(fn, input, sticky=sticky)
    sim.local = dict(local or {})
    sim.drive(activities)
    sim.check_replay()
    return sim


def markers(sim: EngineSim) -> list[dict[str, Any]]:
    return [e["attributes"] for e in sim.history if e["event_type"] == "MarkerRecorded"]


# ---- runtime ------------------------------------------------------------------------------

@sdk.workflow
async def three_steps(ctx: sdk.WorkflowContext, n: int) -> int:
    a = await ctx.execute_local_activity("add_one", n, start_to_close_timeout=5)
    b = await ctx.execute_local_activity("add_one", a, start_to_close_timeout=5)
    c = await ctx.execute_local_activity("double", b, start_to_close_timeout=5)
    return int(c)


LOCALS = {"add_one": lambda n: n + 1, "double": lambda n: 2 * n}


def test_three_local_activities_complete_in_one_workflow_task() -> None:
    sim = local_sim(three_steps, 1, local=LOCALS)
    assert sim.status is Status.COMPLETED
    assert len(sim.sent) == 1
    assert sim.kinds(0) == ["record_marker"] * 3 + ["complete_workflow"]
    assert sim.final == {"kind": "complete_workflow", "result": 6}
    assert sim.pauses == 3 and sim.local_runs == ["add_one", "add_one", "double"]
    assert [m["marker_name"] for m in markers(sim)] == [LOCAL_ACTIVITY_MARKER] * 3
    assert markers(sim)[0] == {"seq": 1, "marker_name": "local_activity", "data": {
        "activity_type": "add_one", "attempts": 1, "result": 2}}
    types = history_types(sim)
    i = types.index("WorkflowTaskCompleted")
    assert types[i:] == ["WorkflowTaskCompleted"] + ["MarkerRecorded"] * 3 + [
        "WorkflowExecutionCompleted"]


def test_replay_answers_from_the_markers_without_running_the_activities() -> None:
    sim = local_sim(three_steps, 1, local=LOCALS)
    sim.local.clear()  # a replay that ran an activity would find no implementation
    replay = replay_history(sim.definition, sim.history, workflow_id="wf-1", run_id="run-1")
    assert replay.failure is None
    assert replay.final_command == {"kind": "complete_workflow", "result": 6}
    assert json.loads(json.dumps(replay.commands)) == sim.sent
    # A worker that picks the run up mid-way (cache miss) replays the earlier task's markers.
    sim2 = EngineSim(mixed, 5)
    sim2.local = dict(LOCALS)
    sim2.drive({"slow_double": lambda n: 2 * n})
    ran = list(sim2.local_runs)
    fresh = EngineSim(mixed, 5, sticky=False)
    fresh.local = dict(LOCALS)
    fresh.drive({"slow_double": lambda n: 2 * n})
    assert fresh.sent == sim2.sent
    assert fresh.local_runs == ran  # each local activity ran once, in its own task


@sdk.workflow
async def renamed(ctx: sdk.WorkflowContext, n: int) -> int:
    a = await ctx.execute_local_activity("add_one", n, start_to_close_timeout=5)
    b = await ctx.execute_local_activity("add_two", a, start_to_close_timeout=5)
    return int(b)


def test_a_changed_activity_type_is_nondeterministic() -> None:
    sim = local_sim(three_steps, 1, local=LOCALS)
    replay = replay_history(workflow_definition(renamed), sim.history, workflow_id="wf-1",
                            run_id="run-1")
    assert replay.cause == "nondeterminism"
    assert replay.failure is not None
    assert "'add_one'" in replay.failure["message"] and "'add_two'" in replay.failure["message"]


@sdk.workflow
async def side_then_local(ctx: sdk.WorkflowContext, _: Any) -> Any:
    return await ctx.side_effect(lambda: 1)


@sdk.workflow
async def local_instead_of_side(ctx: sdk.WorkflowContext, _: Any) -> Any:
    return await ctx.execute_local_activity("add_one", 0, start_to_close_timeout=5)


def test_a_local_activity_where_history_has_another_marker_is_nondeterministic() -> None:
    sim = local_sim(side_then_local)
    replay = replay_history(workflow_definition(local_instead_of_side), sim.history,
                            workflow_id="wf-1", run_id="run-1")
    assert replay.cause == "nondeterminism"


@sdk.workflow
async def catches(ctx: sdk.WorkflowContext, _: Any) -> dict[str, Any]:
    try:
        await ctx.execute_local_activity("charge", {"card": 4}, start_to_close_timeout=5)
    except sdk.ActivityError as err:
        return {"type": err.type, "message": err.message, "attempt": err.attempt,
                "activity_type": err.activity_type, "cause": err.failure["type"]}
    return {}


def _decline(_: Any) -> Any:
    raise sdk.ApplicationError("card declined", type="CardDeclined", non_retryable=True)


def test_a_failed_local_activity_raises_activity_error_and_replays() -> None:
    sim = local_sim(catches, local={"charge": _decline})
    assert sim.final["result"] == {"type": "CardDeclined", "message": "card declined",
                                   "attempt": 1, "activity_type": "charge",
                                   "cause": "CardDeclined"}
    data = markers(sim)[0]["data"]
    assert data["activity_type"] == "charge" and data["attempts"] == 1
    assert data["failure"]["type"] == "CardDeclined" and data["failure"]["non_retryable"]
    assert data["timeout_type"] is None


@sdk.workflow
async def uncaught(ctx: sdk.WorkflowContext, _: Any) -> Any:
    return await ctx.execute_local_activity("charge", None, schedule_to_close_timeout=5)


def test_an_uncaught_local_activity_failure_fails_the_workflow() -> None:
    sim = local_sim(uncaught, local={"charge": _decline})
    assert sim.status is Status.FAILED
    assert sim.final["failure"]["type"] == "ActivityError"


@sdk.workflow
async def mixed(ctx: sdk.WorkflowContext, n: int) -> list[Any]:
    a = await ctx.execute_local_activity("add_one", n, start_to_close_timeout=5)
    b = await ctx.execute_activity("slow_double", a)
    await ctx.sleep(10)
    c, d = await asyncio.gather(
        ctx.execute_local_activity("add_one", b, start_to_close_timeout=5),
        ctx.execute_local_activity("double", b, start_to_close_timeout=5),
    )
    handle = ctx.start_activity("slow_double", c)
    e = await ctx.execute_local_activity("double", d, start_to_close_timeout=5)
    return [a, b, c, d, e, await handle]


@pytest.mark.parametrize("sticky", [True, False])
def test_local_and_regular_activities_and_timers_mix(sticky: bool) -> None:
    sim = local_sim(mixed, 5, sticky=sticky, local=LOCALS,
                    activities={"slow_double": lambda n: 2 * n})
    assert sim.final == {"kind": "complete_workflow", "result": [6, 12, 13, 24, 48, 26]}
    assert sim.kinds(0) == ["record_marker", "schedule_activity"]
    assert sim.kinds(1) == ["start_timer"]
    assert sim.kinds(2) == ["record_marker", "record_marker", "schedule_activity",
                            "record_marker"]
    assert [cmd["seq"] for cmd in sim.commands_of(2)] == [4, 5, 6, 7]
    assert sim.kinds(3) == ["complete_workflow"]
    # The gathered pair ran as one batch: the code resumed once for both.
    assert sim.local_runs == ["add_one", "add_one", "double", "double"]


def test_sticky_continuation_after_a_task_that_ran_local_activities() -> None:
    sim = EngineSim(mixed, 5)
    sim.local = dict(LOCALS)
    sim.run_task()  # marker, then schedule_activity
    instance = sim.instance
    assert instance is not None and not instance.finished
    sim.complete(2, 12)
    sim.run_task()  # the next batch starts with the first task's marker, matched in place
    assert sim.instance is instance and sim.results[-1].failure is None
    assert sim.kinds(1) == ["start_timer"]
    sim.drive({"slow_double": lambda n: 2 * n})
    assert sim.status is Status.COMPLETED
    sim.check_replay()


@sdk.workflow
async def local_then_signals(ctx: sdk.WorkflowContext, _: Any) -> list[Any]:
    a = await ctx.execute_local_activity("add_one", 1, start_to_close_timeout=5)
    sig = await ctx.wait_for_signal(timeout=60)
    return [a, [sig.input]]


def test_a_signal_during_a_closing_task_runs_its_local_activities_again() -> None:
    sim = EngineSim(local_then_signals)
    sim.local = dict(LOCALS)
    scheduled = sim.start_task()
    sim.signal("go", 5)  # arrives while the local activity runs
    sim.finish_task(scheduled)
    # The task would have started a timer (no signal seen yet): it completes, and the signal
    # is seen at the next task, after the marker.
    assert sim.kinds(0) == ["record_marker", "start_timer"]
    sim.drive()
    assert sim.final == {"kind": "complete_workflow", "result": [2, [5]]}
    assert sim.local_runs == ["add_one"]
    sim.check_replay()

    closing = EngineSim(three_steps, 1)
    closing.local = dict(LOCALS)
    scheduled = closing.start_task()
    closing.signal("news", None)
    closing.finish_task(scheduled)  # its close is refused: unhandled_events
    assert closing.history[-2]["attributes"]["cause"] == "unhandled_events"
    closing.drive()
    assert closing.final == {"kind": "complete_workflow", "result": 6}
    assert closing.local_runs == ["add_one", "add_one", "double"] * 2  # at least once
    assert history_types(closing).count("MarkerRecorded") == 3
    closing.check_replay()


@sdk.workflow
async def cancels_a_local(ctx: sdk.WorkflowContext, _: Any) -> str:
    async def first() -> str:
        await ctx.execute_local_activity("add_one", 1, start_to_close_timeout=5)
        return "local"

    task = asyncio.ensure_future(first())
    await asyncio.sleep(0)  # the local activity is issued
    task.cancel()
    try:
        await task
    except asyncio.CancelledError:
        pass
    return "cancelled"


def test_a_local_activity_cancelled_before_it_ran_records_nothing() -> None:
    sim = local_sim(cancels_a_local, local=LOCALS)
    assert sim.final == {"kind": "complete_workflow", "result": "cancelled"}
    assert sim.kinds(0) == ["complete_workflow"]
    assert sim.local_runs == []


def test_resolving_misuse_is_a_worker_error_and_activate_never_raises() -> None:
    definition = workflow_definition(three_steps)
    inst = WorkflowInstance(definition, workflow_id="wf", run_id="r", workflow_type="x",
                            task_queue="q")
    assert inst.resolve_local_activities({}).cause == "worker_error"  # nothing paused
    inst = WorkflowInstance(definition, workflow_id="wf", run_id="r", workflow_type="x",
                            task_queue="q")
    paused = inst.activate(first_events("three_steps", 1))
    assert paused.commands is None and paused.failure is None
    assert paused.local_activities is not None
    [request] = paused.local_activities
    assert (request.seq, request.activity_type, request.input) == (1, "add_one", 1)
    assert request.start_to_close_ms == 5000 and request.schedule_to_close_ms is None
    again = inst.activate(first_events("three_steps", 1))  # while paused
    assert again.cause == "worker_error"
    inst = WorkflowInstance(definition, workflow_id="wf", run_id="r", workflow_type="x",
                            task_queue="q")
    inst.activate(first_events("three_steps", 1))
    assert inst.resolve_local_activities({9: LocalActivityOutcome(9)}).cause == "worker_error"


def test_a_local_activity_needs_a_timeout() -> None:
    @sdk.workflow
    async def no_timeout(ctx: sdk.WorkflowContext, _: Any) -> Any:
        return await ctx.execute_local_activity("add_one", 1)

    sim = EngineSim(no_timeout)
    sim.local = dict(LOCALS)
    sim.drive()
    assert sim.status is Status.RUNNING  # a bug in the code: its workflow task fails
    [failed] = sim.task_failures
    assert failed["cause"] == "workflow_error" and failed["failure"]["type"] == "ValueError"
    assert "start_to_close_timeout" in failed["failure"]["message"]


# ---- the worker ---------------------------------------------------------------------------

CALLS: dict[str, int] = {}


@sdk.activity
def add_one(ctx: sdk.ActivityContext, n: int) -> int:
    assert ctx.info.is_local and threading.current_thread().name.startswith("sched-activity")
    return n + 1


@sdk.activity
async def double(ctx: sdk.ActivityContext, n: int) -> int:
    return 2 * n


@sdk.activity
def flaky(ctx: sdk.ActivityContext, key: str) -> dict[str, int]:
    CALLS[key] = CALLS.get(key, 0) + 1
    if ctx.info.attempt <= 2:
        raise RuntimeError(f"attempt {ctx.info.attempt} fails")
    return {"attempt": ctx.info.attempt}


@sdk.activity
async def sleepy(ctx: sdk.ActivityContext, seconds: float) -> str:
    await asyncio.sleep(seconds)
    return "woke"


@sdk.workflow
async def steps(ctx: sdk.WorkflowContext, n: int) -> int:
    a = await ctx.execute_local_activity(add_one, n, start_to_close_timeout=5)
    b = await ctx.execute_local_activity(double, a, start_to_close_timeout=5)
    return int(await ctx.execute_local_activity(add_one, b, start_to_close_timeout=5))


@sdk.workflow
async def retried(ctx: sdk.WorkflowContext, key: str) -> Any:
    return await ctx.execute_local_activity(flaky, key, start_to_close_timeout=5,
                                            retry_policy=FAST)


@sdk.workflow
async def bounded(ctx: sdk.WorkflowContext, opts: dict[str, Any]) -> Any:
    try:
        return await ctx.execute_local_activity(
            flaky if opts.get("flaky") else sleepy, opts["input"],
            start_to_close_timeout=opts.get("stc"), schedule_to_close_timeout=opts.get("s2c"),
            retry_policy=sdk.RetryPolicy(initial_interval=0.01, maximum_attempts=opts["max"]))
    except sdk.ActivityError as err:
        return {"type": err.type, "timeout_type": err.timeout_type, "attempt": err.attempt}


def test_the_worker_runs_local_activities_and_completes_once() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[steps], activities=[add_one, double]) as (
                engine, worker, _):
            await engine.send(workflow_task("steps", first_events("steps", 1)))
            done = await engine.expect("workflow_task_completed")
            assert [c["kind"] for c in done["commands"]] == ["record_marker"] * 3 + [
                "complete_workflow"]
            assert [c["data"]["result"] for c in done["commands"][:3]] == [2, 4, 5]
            assert done["commands"][-1]["result"] == 5
            assert not worker._workflow_runs

    run_async(scenario)


def test_the_worker_retries_a_local_activity_under_its_policy() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[retried], activities=[flaky]) as (engine, _w, _t):
            await engine.send(workflow_task("retried", first_events("retried", "r1")))
            done = await engine.expect("workflow_task_completed")
            marker, complete = done["commands"]
            assert marker["data"] == {"activity_type": "flaky", "attempts": 3,
                                      "result": {"attempt": 3}}
            assert complete["result"] == {"attempt": 3}
            assert CALLS["r1"] == 3

    run_async(scenario)


@pytest.mark.parametrize(("opts", "expect"), [
    ({"flaky": True, "input": "m2", "stc": 5, "max": 2},
     {"type": "RuntimeError", "timeout_type": None, "attempt": 2}),
    ({"input": 5, "stc": 0.05, "max": 2},
     {"type": "TimeoutError", "timeout_type": "start_to_close", "attempt": 2}),
    ({"input": 5, "stc": 1, "s2c": 0.1, "max": 0},
     {"type": "TimeoutError", "timeout_type": "schedule_to_close", "attempt": 1}),
])
def test_local_activity_attempts_are_bounded(opts: dict[str, Any],
                                             expect: dict[str, Any]) -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[bounded], activities=[flaky, sleepy]) as (
                engine, _w, _t):
            await engine.send(workflow_task("bounded", first_events("bounded", opts)))
            done = await engine.expect("workflow_task_completed")
            assert done["commands"][-1]["result"] == expect

    run_async(scenario)


def test_the_workflow_task_budget_bounds_local_activity_retries() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[bounded], activities=[sleepy],
                                  local_activity_budget=0.3) as (engine, _w, _t):
            opts = {"input": 5, "stc": 0.05, "max": 0}  # unlimited attempts
            await engine.send(workflow_task("bounded", first_events("bounded", opts)))
            done = await engine.expect("workflow_task_completed")
            result = done["commands"][-1]["result"]
            assert result["type"] == "TimeoutError" and result["attempt"] >= 2

    run_async(scenario)


def test_an_unregistered_local_activity_fails_the_workflow_task() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[steps], activities=[add_one]) as (engine, w, _t):
            await engine.send(workflow_task("steps", first_events("steps", 1)))
            failed = await engine.expect("workflow_task_failed")
            assert failed["cause"] == "unknown_activity_type"
            assert failed["failure"]["type"] == "ActivityNotRegisteredError"
            assert "run1" not in w._cache

    run_async(scenario)


def test_marker_data_is_json() -> None:
    sim = local_sim(three_steps, 1, local=LOCALS)
    assert json.loads(json.dumps(markers(sim))) == markers(sim)


@sdk.workflow
async def local_around_regular(ctx: sdk.WorkflowContext, n: int) -> list[Any]:
    a = await ctx.execute_local_activity(add_one, n, start_to_close_timeout=5)
    b = await ctx.execute_activity("remote", a)
    c = await ctx.execute_local_activity(double, b, start_to_close_timeout=5)
    return [a, b, c]


def test_the_worker_continues_a_run_sticky_after_local_activities() -> None:
    async def scenario() -> None:
        async with running_worker(workflows=[local_around_regular],
                                  activities=[add_one, double]) as (engine, worker, _):
            await engine.send(workflow_task("local_around_regular",
                                            first_events("local_around_regular", 1)))
            first = await engine.expect("workflow_task_completed")
            marker, schedule = first["commands"]
            assert marker["kind"] == "record_marker" and schedule["kind"] == "schedule_activity"
            assert "run1" in worker._cache
            later = [
                event(4, "WorkflowTaskCompleted", scheduled_event_id=2, started_event_id=3,
                      worker="wk1"),
                event(5, "MarkerRecorded", seq=1, marker_name="local_activity",
                      data=marker["data"]),
                event(6, "ActivityTaskScheduled", seq=2, activity_type="remote",
                      task_queue="q", input=2, retry_policy=None, schedule_to_close_ms=None,
                      schedule_to_start_ms=None, start_to_close_ms=None, heartbeat_ms=None),
                event(7, "ActivityTaskStarted", scheduled_event_id=6, seq=2, attempt=1,
                      worker="wk1"),
                event(8, "ActivityTaskCompleted", scheduled_event_id=6, seq=2, result=20),
                event(9, "WorkflowTaskScheduled", task_queue="q", attempt=1),
                event(10, "WorkflowTaskStarted", scheduled_event_id=9, attempt=1, worker="wk1"),
            ]
            await engine.send(workflow_task("local_around_regular", later, token="wt2"))
            second = await engine.expect("workflow_task_completed")
            assert second["token"] == "wt2"
            assert [c["kind"] for c in second["commands"]] == ["record_marker",
                                                               "complete_workflow"]
            assert second["commands"][0]["seq"] == 3
            assert second["commands"][-1]["result"] == [2, 20, 40]
            assert not any(m["type"] == "history_request" for m in engine.log)

    run_async(scenario)
