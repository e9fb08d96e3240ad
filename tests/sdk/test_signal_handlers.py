"""Signal handlers and ``wait_condition`` in the deterministic runtime, through whole runs of
``EngineSim`` (the engine's own pure core), each checked to replay to the same commands."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdk._errors import ApplicationError
from sdk._workflow import WorkflowContext, workflow
from tests.sdk.test_runtime import EngineSim, history_types

# ---- buffering and delivery ------------------------------------------------------------------


@workflow
async def collects(ctx: WorkflowContext, n: int) -> dict[str, Any]:
    items: list[Any] = []
    start = await ctx.wait_for_signal("start")
    ctx.set_signal_handler("add", items.append)
    await ctx.wait_condition(lambda: len(items) >= n)
    return {"start": start.input, "items": items}


def test_signals_sent_before_the_handler_is_set_reach_it_in_order_then_later_ones() -> None:
    sim = EngineSim(collects, 4)
    sim.signal("add", 1)  # before the first task
    sim.run_task()
    sim.signal("add", 2)  # while the workflow waits for "start"
    sim.run_task()
    assert sim.sent == [[], []]
    sim.signal("start", "now")
    sim.run_task()  # the handler is set: 1 and 2 go to it
    assert sim.sent[2] == []
    sim.signal("add", 3)
    sim.signal("add", 4)
    sim.run_task()
    assert sim.final == {"kind": "complete_workflow",
                         "result": {"start": "now", "items": [1, 2, 3, 4]}}
    sim.check_replay()


@workflow
async def async_handler(ctx: WorkflowContext, _: Any) -> list[Any]:
    done: list[Any] = []

    async def on_order(order: Any) -> None:
        receipt = await ctx.execute_activity("charge", order, start_to_close_timeout=10)
        await ctx.sleep(1)
        done.append(receipt)

    ctx.set_signal_handler("order", on_order)
    await ctx.wait_condition(lambda: len(done) == 2)
    return done


def test_an_async_handler_runs_activities_and_timers_as_a_workflow_coroutine() -> None:
    sim = EngineSim(async_handler)
    sim.run_task()
    assert sim.sent[0] == []
    sim.signal("order", "a")
    sim.signal("order", "b")
    sim.drive({"charge": lambda order: f"paid {order}"})
    assert sim.kinds(1) == ["schedule_activity", "schedule_activity"]
    assert [cmd["input"] for cmd in sim.sent[1]] == ["a", "b"]  # started in arrival order
    assert sim.final["result"] == ["paid a", "paid b"]
    sim.check_replay()
    replayed = EngineSim(async_handler, sticky=False)
    replayed.run_task()
    replayed.signal("order", "a")
    replayed.signal("order", "b")
    replayed.drive({"charge": lambda order: f"paid {order}"})
    assert replayed.sent == sim.sent  # a cache miss at every task sends the same commands


@workflow
async def dynamic(ctx: WorkflowContext, _: Any) -> dict[str, Any]:
    named: list[Any] = []
    other: list[Any] = []
    ctx.set_signal_handler("add", named.append)
    ctx.set_signal_handler(None, lambda name, value: other.append([name, value]))
    await ctx.wait_condition(lambda: len(named) + len(other) >= 4)
    return {"named": named, "other": other}


def test_a_dynamic_handler_gets_every_signal_no_named_handler_takes() -> None:
    sim = EngineSim(dynamic)
    sim.signal("b", 1)
    sim.signal("add", 2)
    sim.signal("c", 3)
    sim.run_task()
    sim.signal("add", 4)
    sim.run_task()
    assert sim.final["result"] == {"named": [2, 4], "other": [["b", 1], ["c", 3]]}
    sim.check_replay()


@workflow
async def handler_and_waiter(ctx: WorkflowContext, _: Any) -> dict[str, Any]:
    handled: list[Any] = []
    ctx.set_signal_handler("x", handled.append)
    first = await ctx.wait_for_signal()  # handlers take theirs: this gets the "y"
    ctx.set_signal_handler("x", None)
    second = await ctx.wait_for_signal("x")  # removed: the next "x" waits for this
    return {"handled": handled, "first": [first.name, first.input], "second": second.input}


def test_a_handler_takes_its_signals_before_wait_for_signal_and_removing_it_buffers_again(
) -> None:
    sim = EngineSim(handler_and_waiter)
    sim.signal("x", 1)
    sim.signal("y", 2)
    sim.run_task()
    assert sim.status.value == "running"
    sim.signal("x", 3)
    sim.run_task()
    assert sim.final["result"] == {"handled": [1], "first": ["y", 2], "second": 3}
    sim.check_replay()


@workflow
async def fails_in_handler(ctx: WorkflowContext, kind: str) -> None:
    def on_bad(value: Any) -> None:
        if kind == "application":
            raise ApplicationError(f"bad {value}", type="BadSignal")
        raise KeyError(value)

    ctx.set_signal_handler("bad", on_bad)
    await ctx.wait_condition(lambda: False)


def test_a_handler_that_raises_an_application_error_fails_the_run() -> None:
    sim = EngineSim(fails_in_handler, "application")
    sim.run_task()
    sim.signal("bad", 7)
    sim.run_task()
    assert sim.final["kind"] == "fail_workflow"
    assert sim.final["failure"]["type"] == "BadSignal"
    assert sim.final["failure"]["message"] == "bad 7"
    assert sim.status.value == "failed"
    sim.check_replay()


def test_a_handler_with_a_bug_fails_the_workflow_task_and_the_run_stays_open() -> None:
    sim = EngineSim(fails_in_handler, "bug")
    sim.run_task()
    sim.signal("bad", 7)
    result = sim.run_task()
    assert result.cause == "workflow_error"
    assert result.failure is not None and result.failure["type"] == "KeyError"
    assert sim.status.value == "running"


def test_set_signal_handler_checks_its_arguments() -> None:
    @workflow
    async def misuses(ctx: WorkflowContext, what: str) -> str:
        try:
            if what == "name":
                ctx.set_signal_handler(7, print)  # type: ignore[call-overload]
            elif what == "empty":
                ctx.set_signal_handler("", print)
            else:
                ctx.set_signal_handler("a", "not callable")  # type: ignore[call-overload]
        except (TypeError, ValueError) as err:
            return type(err).__name__
        return "accepted"

    assert EngineSim(misuses, "name").drive().final["result"] == "TypeError"
    assert EngineSim(misuses, "empty").drive().final["result"] == "InvalidName"
    assert EngineSim(misuses, "fn").drive().final["result"] == "TypeError"


# ---- wait_condition --------------------------------------------------------------------------


@workflow
async def deadline(ctx: WorkflowContext, already: bool) -> str:
    state = {"done": already}
    ctx.set_signal_handler("done", lambda _: state.update(done=True))
    try:
        await ctx.wait_condition(lambda: state["done"], timeout=60)
    except TimeoutError:
        return "timed out"
    return "done"


def test_a_condition_that_holds_returns_at_once_with_no_timer() -> None:
    sim = EngineSim(deadline, True)
    sim.run_task()
    assert sim.sent == [[{"kind": "complete_workflow", "result": "done"}]]


def test_wait_condition_times_out_on_a_durable_timer() -> None:
    sim = EngineSim(deadline, False)
    sim.run_task()
    assert sim.sent[0] == [{"kind": "start_timer", "seq": 1, "duration_ms": 60_000}]
    sim.fire(1)
    sim.run_task()
    assert sim.final == {"kind": "complete_workflow", "result": "timed out"}
    assert "TimerFired" in history_types(sim)
    sim.check_replay()


def test_a_condition_met_before_the_timeout_cancels_its_timer() -> None:
    sim = EngineSim(deadline, False)
    sim.run_task()
    sim.signal("done")
    sim.run_task()
    assert sim.sent[1] == [{"kind": "cancel_timer", "seq": 1},
                           {"kind": "complete_workflow", "result": "done"}]
    sim.check_replay()


@pytest.mark.parametrize(("signal_first", "outcome"), [(True, "done"), (False, "timed out")])
def test_a_signal_and_the_timer_in_one_task_first_in_history_wins(
        signal_first: bool, outcome: str) -> None:
    sim = EngineSim(deadline, False)
    sim.run_task()
    if signal_first:
        sim.signal("done")
        sim.fire(1)
    else:
        sim.fire(1)
        sim.signal("done")
    sim.run_task()
    assert sim.final == {"kind": "complete_workflow", "result": outcome}
    sim.check_replay()


@workflow
async def counters(ctx: WorkflowContext, _: Any) -> list[str]:
    state = {"n": 0}
    order: list[str] = []

    async def wait_for(at_least: int, label: str) -> None:
        await ctx.wait_condition(lambda: state["n"] >= at_least)
        order.append(label)

    def bump(_: Any) -> None:
        state["n"] += 1

    ctx.set_signal_handler("bump", bump)
    await asyncio.gather(wait_for(2, "two"), wait_for(1, "one"), wait_for(1, "also one"))
    return order


def test_conditions_are_checked_in_order_whenever_the_loop_is_idle() -> None:
    sim = EngineSim(counters)
    sim.run_task()
    sim.signal("bump")
    sim.run_task()
    assert sim.sent[1] == []
    sim.signal("bump")
    sim.run_task()
    assert sim.final["result"] == ["one", "also one", "two"]
    sim.check_replay()


@workflow
async def raising_condition(ctx: WorkflowContext, _: Any) -> str:
    box: dict[str, Any] = {}
    ctx.set_signal_handler("go", lambda value: box.update(value=value))
    try:
        await ctx.wait_condition(lambda: 1 / box["value"] if "value" in box else False)
    except ZeroDivisionError:
        return "the condition raised"
    return "met"


def test_an_exception_in_the_condition_is_raised_to_its_waiter() -> None:
    sim = EngineSim(raising_condition)
    sim.run_task()
    sim.signal("go", 0)
    sim.run_task()
    assert sim.final["result"] == "the condition raised"
    sim.check_replay()


# ---- hypothesis: arrival orders against handler registration -------------------------------


@workflow
async def registers_late(ctx: WorkflowContext, plan: dict[str, Any]) -> list[Any]:
    got: list[Any] = []
    for _ in range(plan["sleeps_before"]):
        await ctx.sleep(1)

    def on_named(value: Any) -> None:
        got.append(value)

    def on_any(name: str, value: Any) -> None:
        got.append([name, value])

    async def on_named_async(value: Any) -> None:
        await asyncio.sleep(0)
        got.append(value)

    if plan["dynamic"]:
        ctx.set_signal_handler(None, on_any)
    else:
        ctx.set_signal_handler("add", on_named_async if plan["async"] else on_named)
    for _ in range(plan["sleeps_after"]):
        await ctx.sleep(1)
    await ctx.wait_condition(lambda: len(got) >= plan["expected"])
    others = [(await ctx.wait_for_signal()).input for _ in range(plan["others"])]
    return [got, others]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    sleeps_before=st.integers(0, 3),
    sleeps_after=st.integers(0, 2),
    arrivals=st.lists(st.tuples(st.integers(0, 6), st.sampled_from(["add", "other"])),
                      max_size=8),
    dynamic=st.booleans(),
    is_async=st.booleans(),
    sticky=st.booleans(),
)
def test_every_signal_reaches_its_handler_exactly_once_in_order(
        sleeps_before: int, sleeps_after: int, arrivals: list[tuple[int, str]],
        dynamic: bool, is_async: bool, sticky: bool) -> None:
    # Numbered in the order they arrive (slot by slot).
    signals = [(slot, name, i) for i, (slot, name) in enumerate(sorted(arrivals,
                                                                      key=lambda a: a[0]))]
    handled = [s for s in signals if dynamic or s[1] == "add"]
    unhandled = [s for s in signals if not dynamic and s[1] != "add"]
    plan = {"sleeps_before": sleeps_before, "sleeps_after": sleeps_after, "dynamic": dynamic,
            "async": is_async, "expected": len(handled), "others": len(unhandled)}
    sim = EngineSim(registers_late, plan, sticky=sticky)
    # Each slot: its signals arrive, then the run takes one step (a task, or a timer + task).
    for slot in range(7):
        for _, name, i in (s for s in signals if s[0] == slot):
            sim.signal(name, i)
        if not sim.state.is_open:
            break
        wt = sim.state.workflow_task
        if wt is None and sim.state.timers:
            sim.fire()
        if sim.state.workflow_task is not None:
            sim.run_task()
    sim.drive()
    assert sim.status.value == "completed", sim.task_failures
    got, others = sim.final["result"]
    expected = [[name, i] if dynamic else i for _, name, i in handled]
    assert got == expected  # each signal once, in the order it arrived
    assert others == [i for _, _, i in unhandled]  # the rest stayed buffered, in order
    sim.check_replay()


@pytest.mark.parametrize("sticky", [True, False])
def test_signals_buffered_across_many_tasks_all_reach_a_late_handler(sticky: bool) -> None:
    plan = {"sleeps_before": 5, "sleeps_after": 0, "dynamic": False, "async": False,
            "expected": 10, "others": 0}
    sim = EngineSim(registers_late, plan, sticky=sticky)
    n = 0
    sim.run_task()
    for _ in range(5):
        sim.signal("add", n)
        sim.signal("add", n + 1)
        n += 2
        sim.fire()
        sim.run_task()
    assert sim.final["result"] == [list(range(10)), []]
    sim.check_replay()


@workflow
async def outer_timeout(ctx: WorkflowContext, _: Any) -> list[Any]:
    state = {"go": False}
    ctx.set_signal_handler("go", lambda _: state.update(go=True))
    try:
        await asyncio.wait_for(ctx.wait_condition(lambda: state["go"], timeout=600), 5)
        first = "met"
    except TimeoutError:
        first = "outer timeout"
    await ctx.wait_condition(lambda: state["go"])
    return [first, "met later"]


def test_a_cancelled_wait_condition_cancels_its_timer_and_stops_waiting() -> None:
    sim = EngineSim(outer_timeout)
    sim.run_task()
    assert [cmd["duration_ms"] for cmd in sim.sent[0]] == [5_000, 600_000]
    sim.fire(1)  # asyncio.wait_for's timer
    sim.run_task()
    assert sim.sent[1] == [{"kind": "cancel_timer", "seq": 2}]
    sim.signal("go")
    sim.run_task()
    assert sim.final["result"] == ["outer timeout", "met later"]
    sim.check_replay()
