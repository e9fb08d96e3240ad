"""The deterministic workflow runtime, driven through whole runs by a tiny engine simulator.

``EngineSim`` uses the engine's own pure core (``workflows.core.decide``) to turn the commands a
``WorkflowInstance`` returns into history, feeds the instance only the new events each task
(sticky execution, as the worker does), and can replay the final history from scratch in a
fresh instance: every run here is checked to replay to the very same commands.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdk._errors import (
    ActivityError,
    ApplicationError,
    WorkflowFailureError,
    failure_from_exception,
)
from sdk._retry import RetryPolicy
from sdk._runtime import (
    ActivationResult,
    LocalActivityOutcome,
    WorkflowInstance,
    replay_history,
)
from sdk._workflow import (
    Signal,
    WorkflowContext,
    WorkflowDefinition,
    workflow,
    workflow_definition,
    workflow_registry,
)
from workflows.core import commands as c
from workflows.core import decide
from workflows.core.events import EventType
from workflows.core.state import Status

T0 = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def wire(events: list[Any]) -> list[dict[str, Any]]:
    """Events as the worker receives them: JSON over the websocket."""
    loaded: list[dict[str, Any]] = json.loads(json.dumps([e.to_wire() for e in events]))
    return loaded


class EngineSim:
    """Drives one workflow run: the engine's decide functions + one WorkflowInstance."""

    def __init__(self, fn: Any, input: Any = None, *, sticky: bool = True,
                 workflow_id: str = "wf-1", run_id: str = "run-1",
                 failure_exception_types: tuple[type[BaseException], ...] = (),
                 start_signal: tuple[str, Any] | None = None,
                 start_options: dict[str, Any] | None = None) -> None:
        """``start_signal``: (name, input) of a signal-with-start's signal;
        ``start_options``: more of ``decide.start``'s arguments (a retried run's)."""
        self.definition = workflow_definition(fn)
        self.failure_exception_types = failure_exception_types
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.sticky = sticky
        self.now = T0
        t = decide.start(workflow_type=self.definition.name, task_queue="q", input=input,
                         now=self.now,
                         start_signal=None if start_signal is None else start_signal[0],
                         start_signal_input=None if start_signal is None else start_signal[1],
                         **(start_options or {}))
        self.state = t.state
        self.history: list[dict[str, Any]] = wire(t.events)
        self.instance: WorkflowInstance | None = None
        self.delivered = 0
        self.task_end = 0
        self.batches: list[list[dict[str, Any]]] = []
        self.results: list[ActivationResult] = []
        self.sent: list[list[dict[str, Any]]] = []  # commands the engine accepted, per task
        # Local activities the "worker" runs inside a task: one attempt each, by type.
        self.local: dict[str, Callable[[Any], Any]] = {}
        self.local_runs: list[str] = []  # activity types run, in order
        self.pauses = 0  # times an activation paused on local activities
        self.taken_ids: set[str] = set()  # workflow ids with an open run: a child start fails

    # ---- engine side ------------------------------------------------------------------

    def _apply(self, t: decide.Transition) -> list[dict[str, Any]]:
        self.state = t.state
        new = wire(t.events)
        self.history.extend(new)
        return new

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    def end_backoff(self) -> None:
        """A retried run's first workflow task back-off is over (its retry timer fired)."""
        self._apply(decide.retry_workflow_task(self.state, now=self.now))

    def start_task(self) -> int:
        wt = self.state.workflow_task
        assert wt is not None and wt.started_event_id is None, "no workflow task scheduled"
        self._apply(decide.start_workflow_task(self.state, scheduled_event_id=wt.scheduled_event_id,
                                               worker="w1", now=self.now))
        self.task_end = len(self.history)  # the task carries the events up to its start
        return wt.scheduled_event_id

    def run_task(self) -> ActivationResult:
        scheduled = self.start_task()
        return self.finish_task(scheduled)

    def finish_task(self, scheduled: int) -> ActivationResult:
        if self.instance is None or not self.sticky:
            self.instance = WorkflowInstance(
                self.definition, workflow_id=self.workflow_id, run_id=self.run_id,
                workflow_type=self.definition.name, task_queue="q",
                failure_exception_types=self.failure_exception_types,
            )
            self.delivered = 0
        assert self.history[self.delivered]["event_id"] == self.instance.next_event_id
        batch = self.history[self.delivered:self.task_end]
        self.delivered = self.task_end
        self.batches.append(batch)
        result = self.resolve_locals(self.instance, self.instance.activate(batch))
        self.results.append(result)
        if result.failure is not None:
            assert result.commands is None
            self._apply(decide.fail_workflow_task(
                self.state, scheduled_event_id=scheduled, cause=result.cause or "",
                failure=result.failure, now=self.now))
            self._apply(decide.retry_workflow_task(self.state, now=self.now))
            self.instance = None
            return result
        assert result.commands is not None
        commands = json.loads(json.dumps(result.commands))
        parsed = c.parse_commands(commands)
        new = self._apply(decide.complete_workflow_task(
            self.state, scheduled_event_id=scheduled, commands=parsed,
            worker="w1", now=self.now, successor_run_id=f"{self.run_id}-next",
            child_run_ids={cmd.seq: None if cmd.workflow_id in self.taken_ids
                           else f"{cmd.workflow_id}-run" for cmd in parsed
                           if isinstance(cmd, c.StartChildWorkflow)}))
        if new[0]["event_type"] == "WorkflowTaskCompleted":
            self.sent.append(commands)
        if self.instance.finished or new[0]["event_type"] != "WorkflowTaskCompleted":
            self.instance = None
        return result

    def resolve_locals(self, instance: WorkflowInstance,
                       result: ActivationResult) -> ActivationResult:
        """Run the local activities a paused activation waits for, as a worker does."""
        while result.local_activities:
            self.pauses += 1
            outcomes = {}
            for request in result.local_activities:
                self.local_runs.append(request.activity_type)
                try:
                    value = self.local[request.activity_type](request.input)
                except Exception as exc:
                    outcomes[request.seq] = LocalActivityOutcome(
                        request.seq, failure=failure_from_exception(exc))
                else:
                    outcomes[request.seq] = LocalActivityOutcome(request.seq, result=value)
            result = instance.resolve_local_activities(outcomes)
        return result

    def scheduled(self, seq: int) -> dict[str, Any]:
        activity = self.state.activities[seq]
        attributes: dict[str, Any] = self.history[activity.scheduled_event_id - 1]["attributes"]
        return attributes

    def complete(self, seq: int, result: Any = None) -> None:
        self._apply(decide.close_activity(
            self.state, seq=seq, outcome=EventType.ACTIVITY_TASK_COMPLETED, now=self.now,
            attempt=1, worker="w1", result=result))

    def fail(self, seq: int, failure: dict[str, Any], attempt: int = 1) -> None:
        self._apply(decide.close_activity(
            self.state, seq=seq, outcome=EventType.ACTIVITY_TASK_FAILED, now=self.now,
            attempt=attempt, worker="w1", failure=failure))

    def time_out(self, seq: int, timeout_type: str = "start_to_close") -> None:
        self._apply(decide.close_activity(
            self.state, seq=seq, outcome=EventType.ACTIVITY_TASK_TIMED_OUT, now=self.now,
            attempt=3, worker=None, timeout_type=timeout_type,
            failure={"type": "ActivityTimeout", "message": f"{timeout_type} timeout"}))

    def fire(self, seq: int | None = None) -> None:
        """Fire timer ``seq`` (default: the one due first), moving the clock to its time."""
        if seq is None:
            seq = min(self.state.timers.values(), key=lambda t: (t.fire_at, t.seq)).seq
        fire_at = datetime.fromisoformat(self.state.timers[seq].fire_at)
        self.now = max(self.now, fire_at)
        self._apply(decide.fire_timer(self.state, seq=seq, now=self.now))

    def signal(self, name: str, input: Any = None) -> None:
        self._apply(decide.signal(self.state, name=name, input=input, now=self.now))

    def cancel(self) -> None:
        self._apply(decide.request_cancel(self.state, reason="test", now=self.now))

    def update(self, update_id: str, name: str, *args: Any) -> None:
        """The engine accepts the update ``update_id`` (its validator passed)."""
        self._apply(decide.accept_update(self.state, update_id=update_id, name=name,
                                         args=list(args), now=self.now))

    def child_closed(self, workflow_id: str, outcome: str, **attributes: Any) -> None:
        """The child ``workflow_id`` ended with ``outcome`` (``ChildWorkflowExecution...``)."""
        self._apply(decide.child_closed(
            self.state, workflow_id=workflow_id, run_id=f"{workflow_id}-run",
            outcome=EventType(f"ChildWorkflowExecution{outcome}"), now=self.now,
            **attributes))

    def child_signaled(self, seq: int, *, delivered: bool = True) -> None:
        """The engine delivered the signal ``seq`` to its child (or found it closed)."""
        workflow_id = self.state.external[seq].workflow_id
        self._apply(decide.child_signaled(
            self.state, seq=seq, run_id=f"{workflow_id}-run" if delivered else None,
            now=self.now))

    def drive(self, activities: dict[str, Callable[[Any], Any]] | None = None,
              max_tasks: int = 100_000) -> EngineSim:
        """Run tasks, complete activities (in seq order) and fire timers until the run closes
        or waits for something only the test can give (a signal)."""
        impls = activities or {}
        for _ in range(max_tasks):
            if not self.state.is_open:
                return self
            wt = self.state.workflow_task
            if wt is not None and wt.started_event_id is None:
                self.advance(0.25)
                result = self.run_task()
                if result.failure is not None:
                    return self
                continue
            if self.state.activities:
                for seq in sorted(self.state.activities):
                    attrs = self.scheduled(seq)
                    try:
                        value = impls[attrs["activity_type"]](attrs["input"])
                    except Exception as exc:
                        self.fail(seq, failure_from_exception(exc))
                    else:
                        self.complete(seq, value)
                continue
            if self.state.timers:
                self.fire()
                continue
            return self
        raise AssertionError("the run did not settle")

    # ---- what tests look at -------------------------------------------------------------

    @property
    def status(self) -> Status:
        return self.state.status

    @property
    def final(self) -> dict[str, Any]:
        return self.sent[-1][-1]

    def commands_of(self, task: int) -> list[dict[str, Any]]:
        return self.sent[task]

    def kinds(self, task: int) -> list[str]:
        return [cmd["kind"] for cmd in self.sent[task]]

    @property
    def task_failures(self) -> list[dict[str, Any]]:
        """The attributes of every WorkflowTaskFailed in the history."""
        return [e["attributes"] for e in self.history if e["event_type"] == "WorkflowTaskFailed"]

    def check_replay(self) -> None:
        """A fresh instance replaying the whole history agrees with what was sent."""
        replay = replay_history(self.definition, self.history, workflow_id=self.workflow_id,
                                run_id=self.run_id)
        assert replay.failure is None, replay.failure
        assert json.loads(json.dumps(replay.commands)) == self.sent


def simulate(fn: Any, input: Any = None,
             activities: dict[str, Callable[[Any], Any]] | None = None) -> EngineSim:
    sim = EngineSim(fn, input).drive(activities)
    sim.check_replay()
    return sim


def history_types(sim: EngineSim) -> list[str]:
    return [e["event_type"] for e in sim.history]


# ---- workflows under test -----------------------------------------------------------------

@workflow
async def hello(ctx: WorkflowContext, name: str) -> str:
    greeting: str = await ctx.execute_activity("greet", name, start_to_close_timeout=10)
    return greeting


def test_hello() -> None:
    sim = simulate(hello, "bob", {"greet": lambda n: f"Hello, {n}!"})
    assert sim.status is Status.COMPLETED
    assert sim.final == {"kind": "complete_workflow", "result": "Hello, bob!"}
    schedule = sim.commands_of(0)[0]
    assert schedule["kind"] == "schedule_activity" and schedule["seq"] == 1
    assert schedule["activity_type"] == "greet" and schedule["start_to_close_ms"] == 10_000
    assert history_types(sim)[-1] == "WorkflowExecutionCompleted"


class _FakeActivity:
    """What ``@sdk.activity`` leaves on a function (the other helper's decorator)."""

    def __init__(self, name: str) -> None:
        self.name = name


def shout(ctx: Any, text: str) -> str:
    return text.upper()


shout.__sched_activity__ = _FakeActivity("shout.v1")  # type: ignore[attr-defined]


@workflow(name="chain.v1")
async def chain(ctx: WorkflowContext, text: str) -> list[str]:
    a = await ctx.execute_activity(shout, text,
                                   retry_policy=RetryPolicy(maximum_attempts=3),
                                   schedule_to_close_timeout=timedelta(minutes=1))
    b = await ctx.execute_activity("reverse", a, task_queue="other")
    d = await ctx.execute_activity("reverse", b, heartbeat_timeout=0.0001)
    return [a, b, d]


def test_sequential_activities_with_options() -> None:
    sim = simulate(chain, "abc", {"shout.v1": str.upper, "reverse": lambda s: s[::-1]})
    assert sim.definition.name == "chain.v1"
    assert sim.final == {"kind": "complete_workflow", "result": ["ABC", "CBA", "ABC"]}
    assert [cmd["activity_type"] for cmd in (sim.commands_of(i)[0] for i in range(3))] == [
        "shout.v1", "reverse", "reverse"]
    first, second, third = (sim.commands_of(i)[0] for i in range(3))
    assert first["retry_policy"] == {
        "initial_interval_ms": 1000, "backoff_coefficient": 2.0, "maximum_interval_ms": None,
        "maximum_attempts": 3, "non_retryable_error_types": []}
    assert first["schedule_to_close_ms"] == 60_000
    assert second["task_queue"] == "other"
    assert third["heartbeat_ms"] == 1
    assert [cmd["seq"] for cmd in (first, second, third)] == [1, 2, 3]


@workflow
async def fan_out(ctx: WorkflowContext, n: int) -> list[int]:
    return list(await asyncio.gather(*(ctx.execute_activity("double", i) for i in range(n))))


def test_gather_of_50_activities() -> None:
    sim = simulate(fan_out, 50, {"double": lambda i: 2 * i})
    assert sim.kinds(0) == ["schedule_activity"] * 50
    assert [cmd["seq"] for cmd in sim.commands_of(0)] == list(range(1, 51))
    assert sim.final == {"kind": "complete_workflow", "result": [2 * i for i in range(50)]}
    assert len(sim.sent) == 2  # all 50 results arrive before the next task runs


@workflow
async def catches_failure(ctx: WorkflowContext, _: Any) -> dict[str, Any]:
    try:
        await ctx.execute_activity("charge", 10)
    except ActivityError as err:
        return {"type": err.type, "message": err.message, "attempt": err.attempt,
                "timeout_type": err.timeout_type, "details": err.failure["details"]}
    return {}


def test_activity_failure_raises_activity_error() -> None:
    sim = EngineSim(catches_failure)
    sim.run_task()
    sim.fail(1, {"type": "CardDeclined", "message": "no funds", "stack": "...",
                 "details": {"code": 51}, "non_retryable": True}, attempt=3)
    sim.run_task()
    assert sim.final == {"kind": "complete_workflow", "result": {
        "type": "CardDeclined", "message": "no funds", "attempt": 3, "timeout_type": None,
        "details": {"code": 51}}}
    sim.check_replay()


def test_activity_timeout_raises_activity_error() -> None:
    sim = EngineSim(catches_failure)
    sim.run_task()
    sim.time_out(1, "schedule_to_close")
    sim.run_task()
    result = sim.final["result"]
    assert result["type"] == "ActivityTimeout" and result["timeout_type"] == "schedule_to_close"
    assert result["attempt"] == 3
    sim.check_replay()


def test_uncaught_activity_error_fails_the_workflow() -> None:
    def boom(_: Any) -> Any:
        raise ApplicationError("cannot greet", type="GreetError")

    sim = simulate(hello, "bob", {"greet": boom})
    assert sim.status is Status.FAILED
    failure = sim.final["failure"]
    assert failure["type"] == "ActivityError"
    assert "GreetError: cannot greet" in failure["message"]
    assert "hello" in failure["stack"]


@workflow
async def naps(ctx: WorkflowContext, _: Any) -> list[str]:
    before = ctx.now()
    await ctx.sleep(1.5)
    middle = ctx.now()
    await ctx.sleep(timedelta(minutes=2))
    await ctx.sleep(-5)  # a deadline already passed: zero, not an error
    return [before.isoformat(), middle.isoformat(), ctx.now().isoformat()]


def test_sleep_is_a_durable_timer() -> None:
    sim = simulate(naps)
    assert sim.commands_of(0) == [{"kind": "start_timer", "seq": 1, "duration_ms": 1500}]
    assert sim.commands_of(1) == [{"kind": "start_timer", "seq": 2, "duration_ms": 120_000}]
    assert sim.commands_of(2) == [{"kind": "start_timer", "seq": 3, "duration_ms": 0}]
    before, middle, after = (datetime.fromisoformat(t) for t in sim.final["result"])
    assert middle - before >= timedelta(seconds=1.5)
    assert after - middle >= timedelta(minutes=2)
    started = [e for e in sim.history if e["event_type"] == "WorkflowTaskStarted"]
    assert [datetime.fromisoformat(e["timestamp"]) for e in started[:2]] == [before, middle]


@workflow
async def waits_for_signals(ctx: WorkflowContext, n: int) -> list[Any]:
    await ctx.sleep(10)
    got = []
    for _ in range(n):
        sig = await ctx.wait_for_signal("add")
        got.append(sig.input)
    return got


def test_signal_before_the_wait_is_buffered() -> None:
    sim = EngineSim(waits_for_signals, 2)
    sim.signal("add", 1)  # before the first task even ran
    sim.run_task()
    sim.signal("add", 2)  # during the sleep
    sim.fire()
    sim.run_task()
    assert sim.kinds(1) == ["complete_workflow"]  # both buffered: no command, no wait
    assert sim.final["result"] == [1, 2]
    sim.check_replay()


@workflow
async def named(ctx: WorkflowContext, _: Any) -> list[Any]:
    first = await ctx.wait_for_signal("a")
    rest = [await ctx.wait_for_signal() for _ in range(2)]
    return [first.name, first.input] + [[s.name, s.input] for s in rest]


def test_wait_for_signal_by_name_keeps_other_signals() -> None:
    sim = EngineSim(named)
    sim.run_task()
    assert sim.sent[0] == []
    sim.signal("b", 1)
    sim.signal("c", 2)
    sim.run_task()  # nothing for "a" yet
    assert sim.sent[1] == []
    sim.signal("a", 3)
    sim.run_task()
    assert sim.final["result"] == ["a", 3, ["b", 1], ["c", 2]]
    sim.check_replay()


@workflow
async def approval(ctx: WorkflowContext, _: Any) -> str:
    try:
        sig = await ctx.wait_for_signal("approve", timeout=60)
    except TimeoutError:
        return "timed out"
    return f"approved by {sig.input}"


def test_wait_for_signal_times_out() -> None:
    sim = EngineSim(approval)
    sim.run_task()
    assert sim.commands_of(0) == [{"kind": "start_timer", "seq": 1, "duration_ms": 60_000}]
    sim.signal("other", None)  # does not match: stays buffered, the wait goes on
    sim.run_task()
    assert sim.sent[1] == []
    sim.fire(1)
    sim.run_task()
    assert sim.final == {"kind": "complete_workflow", "result": "timed out"}
    sim.check_replay()


def test_signal_before_timeout_cancels_the_timer() -> None:
    sim = EngineSim(approval)
    sim.run_task()
    sim.signal("approve", "ann")
    sim.run_task()
    assert sim.commands_of(1) == [
        {"kind": "cancel_timer", "seq": 1},
        {"kind": "complete_workflow", "result": "approved by ann"},
    ]
    assert "TimerCanceled" in history_types(sim)
    sim.check_replay()


def test_signal_and_timer_in_one_task_first_in_history_wins() -> None:
    sim = EngineSim(approval)
    sim.run_task()
    sim.fire(1)
    sim.signal("approve", "late")
    sim.run_task()
    assert sim.final["result"] == "timed out"
    sim.check_replay()


@workflow
async def two_waiters(ctx: WorkflowContext, _: Any) -> list[Any]:
    async def wait(label: str, name: str | None) -> list[Any]:
        sig = await ctx.wait_for_signal(name)
        return [label, sig.input]

    return list(await asyncio.gather(wait("any", None), wait("x", "x"), wait("any2", None)))


def test_several_waiters_fifo_first_matching_wins() -> None:
    sim = EngineSim(two_waiters)
    sim.run_task()
    sim.signal("y", 1)
    sim.signal("x", 2)
    sim.signal("x", 3)
    sim.run_task()
    assert sim.final["result"] == [["any", 1], ["x", 2], ["any2", 3]]
    sim.check_replay()


calls: list[int] = []


@workflow
async def effects(ctx: WorkflowContext, _: Any) -> list[Any]:
    def draw() -> int:
        calls.append(1)
        return 41 + len(calls)

    async def draw_async() -> tuple[str, int]:
        return ("t", 1)

    a = await ctx.side_effect(draw)
    await ctx.sleep(1)
    b: Any = await ctx.side_effect(draw_async)
    return [a, b]


def test_side_effect_is_recorded_and_replayed_without_calling_fn() -> None:
    calls.clear()
    sim = EngineSim(effects, sticky=True).drive()
    assert sim.commands_of(0) == [
        {"kind": "record_marker", "seq": 1, "marker_name": "side_effect", "data": 42},
        {"kind": "start_timer", "seq": 2, "duration_ms": 1000},
    ]
    assert sim.final == {"kind": "complete_workflow", "result": [42, ["t", 1]]}
    assert len(calls) == 1
    sim.check_replay()  # replays both tasks
    assert len(calls) == 1  # ... without calling fn again


fragile_calls: list[int] = []
replay_flags: list[bool] = []


@workflow
async def fragile_effect(ctx: WorkflowContext, _: Any) -> str:
    def flaky() -> int:
        fragile_calls.append(1)
        raise ValueError("no entropy today")

    replay_flags.append(ctx.is_replaying)
    try:
        await ctx.side_effect(flaky)
    except ValueError:
        pass
    await ctx.sleep(1)
    replay_flags.append(ctx.is_replaying)
    return "ok"


def test_side_effect_that_raises_records_nothing_and_replays() -> None:
    fragile_calls.clear()
    replay_flags.clear()
    sim = EngineSim(fragile_effect).drive()
    assert sim.commands_of(0) == [{"kind": "start_timer", "seq": 2, "duration_ms": 1000}]
    assert replay_flags == [False, False]
    sim.check_replay()
    assert replay_flags == [False, False, True, True]
    assert len(fragile_calls) == 2  # a failed side effect is tried again on replay


def test_events_that_arrive_during_a_sticky_task_are_seen_next_time() -> None:
    sim = EngineSim(waits_for_signals, 1)
    scheduled = sim.start_task()
    sim.signal("add", "early")  # while the first task runs
    sim.finish_task(scheduled)
    sim.fire()
    sim.run_task()
    assert [e["event_type"] for e in sim.batches[1][:3]] == [
        "WorkflowExecutionSignaled", "WorkflowTaskCompleted", "TimerStarted"]
    assert sim.final["result"] == ["early"]
    sim.check_replay()


@workflow
async def identity(ctx: WorkflowContext, _: Any) -> dict[str, Any]:
    first = {"now": ctx.now().isoformat(), "rand": ctx.random().random(),
             "uuid": str(ctx.uuid4()), "same_random": ctx.random() is ctx.random(),
             "info": [ctx.info.workflow_id, ctx.info.run_id, ctx.info.workflow_type,
                      ctx.info.task_queue, ctx.info.attempt]}
    await ctx.sleep(30)
    first["later_now"] = ctx.now().isoformat()
    first["later_uuid"] = str(ctx.uuid4())
    return first


def test_now_random_uuid_are_identical_across_replay() -> None:
    sim = simulate(identity)
    result = sim.final["result"]
    assert result["same_random"] is True
    assert result["info"] == ["wf-1", "run-1", "identity", "q", 1]
    assert datetime.fromisoformat(result["now"]).tzinfo is not None
    import uuid
    assert uuid.UUID(result["uuid"]).version == 4
    # A different run id gives different values; the same run id the same ones.
    other = EngineSim(identity, run_id="run-2").drive()
    assert other.final["result"]["uuid"] != result["uuid"]
    again = EngineSim(identity, sticky=False).drive()
    assert again.final["result"] == result


@workflow
async def cancellable(ctx: WorkflowContext, catch: bool) -> str:
    try:
        await ctx.execute_activity("slow")
    except asyncio.CancelledError:
        if not catch:
            raise
        await ctx.execute_activity("cleanup")
        return "cleaned up"
    return "done"


def test_cancel_request_cancels_the_workflow() -> None:
    sim = EngineSim(cancellable, False)
    sim.run_task()
    sim.cancel()
    sim.run_task()
    assert sim.commands_of(1) == [{"kind": "request_cancel_activity", "seq": 1},
                                  {"kind": "cancel_workflow", "details": None}]
    assert sim.status is Status.CANCELED
    sim.check_replay()


def test_workflow_that_catches_cancellation_completes() -> None:
    sim = EngineSim(cancellable, True)
    sim.run_task()
    sim.cancel()
    sim.run_task()
    assert sim.kinds(1) == ["request_cancel_activity", "schedule_activity"]
    assert "ActivityTaskCancelRequested" in history_types(sim)
    sim.complete(2)
    sim.complete(1)  # the engine's outcome for the cancelled activity: ignored
    sim.run_task()
    assert sim.final == {"kind": "complete_workflow", "result": "cleaned up"}
    sim.check_replay()


@workflow
async def races(ctx: WorkflowContext, _: Any) -> str:
    slow = ctx.start_activity("slow")
    nap = asyncio.ensure_future(ctx.sleep(5))
    done, pending = await asyncio.wait([slow, nap], return_when=asyncio.FIRST_COMPLETED)
    for p in pending:
        p.cancel()
    await asyncio.sleep(0)  # let the cancellation run
    return "slept" if nap in done else "worked"


def test_cancelling_handles_sends_cancel_commands() -> None:
    sim = EngineSim(races)
    sim.run_task()
    assert sim.kinds(0) == ["schedule_activity", "start_timer"]
    sim.fire(2)
    sim.run_task()
    assert sim.commands_of(1) == [{"kind": "request_cancel_activity", "seq": 1},
                                  {"kind": "complete_workflow", "result": "slept"}]
    sim.check_replay()

    sim = EngineSim(races)
    sim.run_task()
    sim.complete(1, None)
    sim.run_task()
    assert sim.commands_of(1) == [{"kind": "cancel_timer", "seq": 2},
                                  {"kind": "complete_workflow", "result": "worked"}]
    sim.check_replay()


@workflow
async def explodes(ctx: WorkflowContext, _: Any) -> None:
    await ctx.sleep(1)
    raise ApplicationError("bad order", type="OrderError", details={"id": 7})


@workflow
async def divides(ctx: WorkflowContext, n: int) -> float:
    return 1 / n


def test_an_application_error_in_workflow_code_fails_the_run() -> None:
    sim = simulate(explodes)
    failure = sim.final["failure"]
    assert sim.status is Status.FAILED
    assert failure["type"] == "OrderError" and failure["message"] == "bad order"
    assert failure["details"] == {"id": 7}
    assert "explodes" in failure["stack"] and "Traceback" in failure["stack"]
    assert sim.task_failures == []


def test_any_other_exception_fails_the_workflow_task_and_the_run_stays_open() -> None:
    sim = EngineSim(divides, 0).drive()
    assert sim.status is Status.RUNNING
    assert sim.sent == []  # no command reached the engine
    assert sim.results[-1].cause == "workflow_error"
    [failed] = sim.task_failures
    assert failed["cause"] == "workflow_error"
    assert failed["failure"]["type"] == "ZeroDivisionError"
    assert failed["failure"]["message"] == "division by zero"
    assert "divides" in failed["failure"]["stack"]
    # The engine retries the task (with back-off): the same code fails it again.
    sim.drive()
    assert sim.status is Status.RUNNING and len(sim.task_failures) == 2
    assert sim.state.workflow_task is not None and sim.state.workflow_task.attempt == 3


@workflow(name="priced")
async def priced_buggy(ctx: WorkflowContext, order: dict[str, Any]) -> int:
    price: dict[str, int] = await ctx.execute_activity("price", order)
    return price["total"] + price["shipping"]  # KeyError: the activity sends no shipping


@workflow(name="priced")
async def priced_fixed(ctx: WorkflowContext, order: dict[str, Any]) -> int:
    price: dict[str, int] = await ctx.execute_activity("price", order)
    return price["total"] + price.get("shipping", 0)


def test_deploying_fixed_code_resumes_a_run_whose_workflow_task_failed() -> None:
    sim = EngineSim(priced_buggy, {"id": 1}).drive({"price": lambda _: {"total": 7}})
    assert sim.state.is_open
    assert [f["failure"]["type"] for f in sim.task_failures] == ["KeyError"]
    assert sim.kinds(0) == ["schedule_activity"]  # the first task completed
    sim.definition = workflow_definition(priced_fixed)  # the deploy
    sim.drive()
    assert sim.final == {"kind": "complete_workflow", "result": 7}
    assert sim.status is Status.COMPLETED
    sim.check_replay()  # the failed task is skipped on replay


@workflow(failure_exception_types=[KeyError])
async def strict_lookup(ctx: WorkflowContext, key: str) -> int:
    return {"a": 1}[key]


def test_failure_exception_types_of_the_workflow_fail_the_run() -> None:
    sim = simulate(strict_lookup, "b")
    assert sim.status is Status.FAILED
    assert sim.final["failure"]["type"] == "KeyError"
    assert sim.task_failures == []
    # Not every exception: a ZeroDivisionError still fails only the task.
    assert workflow_definition(strict_lookup).failure_exception_types == (KeyError,)


def test_failure_exception_types_of_the_worker_fail_the_run_subclasses_too() -> None:
    sim = EngineSim(divides, 0, failure_exception_types=(ArithmeticError,)).drive()
    assert sim.status is Status.FAILED
    assert sim.final["failure"]["type"] == "ZeroDivisionError"
    sim = EngineSim(divides, 0, failure_exception_types=(KeyError,)).drive()
    assert sim.status is Status.RUNNING
    assert sim.task_failures[0]["cause"] == "workflow_error"
    with pytest.raises(TypeError, match="exception classes"):
        workflow(failure_exception_types=["KeyError"])  # type: ignore[list-item]


@workflow
async def returns_a_set(ctx: WorkflowContext, _: Any) -> Any:
    return {1: object()}  # a set would convert (to an array); an object() does not


def test_an_unserializable_result_fails_the_workflow_task() -> None:
    sim = EngineSim(returns_a_set).drive()
    assert sim.status is Status.RUNNING
    [failed] = sim.task_failures
    assert failed["cause"] == "workflow_error"
    assert failed["failure"]["type"] == "TypeError"
    assert "JSON" in failed["failure"]["message"]
    sim = EngineSim(returns_a_set, failure_exception_types=(TypeError,)).drive()
    assert sim.status is Status.FAILED


# ---- asyncio's clock: durable timers --------------------------------------------------------

@workflow
async def asyncio_naps(ctx: WorkflowContext, _: Any) -> list[Any]:
    loop = asyncio.get_running_loop()
    times = [loop.time()]
    on_workflow_time = times[0] == ctx.now().timestamp()
    await asyncio.sleep(0)  # only yields: no timer
    await asyncio.sleep(1.5)
    times.append(loop.time())
    await asyncio.sleep(timedelta(minutes=2).total_seconds())
    times.append(loop.time())
    return [t - times[0] for t in times] + [on_workflow_time]


def test_asyncio_sleep_is_a_durable_timer_like_ctx_sleep() -> None:
    sim = simulate(asyncio_naps)
    assert sim.commands_of(0) == [{"kind": "start_timer", "seq": 1, "duration_ms": 1500}]
    assert sim.commands_of(1) == [{"kind": "start_timer", "seq": 2, "duration_ms": 120_000}]
    elapsed = sim.final["result"]
    assert elapsed[0] == 0 and elapsed[1] >= 1.5 and elapsed[2] - elapsed[1] >= 120
    assert elapsed[3] is True  # the loop's clock is workflow time
    assert history_types(sim).count("TimerFired") == 2
    full = EngineSim(asyncio_naps, sticky=False).drive()
    assert full.sent == sim.sent


@workflow
async def ctx_naps(ctx: WorkflowContext, _: Any) -> None:
    await ctx.sleep(1.5)


@workflow
async def asyncio_nap(ctx: WorkflowContext, _: Any) -> None:
    await asyncio.sleep(1.5)


def test_asyncio_sleep_and_ctx_sleep_write_the_same_history() -> None:
    a = simulate(ctx_naps)
    b = simulate(asyncio_nap)
    assert a.sent == b.sent
    assert history_types(a) == history_types(b)


@workflow
async def asyncio_timeouts(ctx: WorkflowContext, how: str) -> str:
    try:
        if how == "wait_for":
            sig = await asyncio.wait_for(ctx.wait_for_signal("go"), timeout=5)
        else:
            async with asyncio.timeout(5):
                sig = await ctx.wait_for_signal("go")
    except TimeoutError:
        return "timed out"
    return f"go {sig.input}"


@pytest.mark.parametrize("how", ["wait_for", "timeout"])
def test_asyncio_timeouts_are_durable_timers(how: str) -> None:
    sim = EngineSim(asyncio_timeouts, how)
    sim.run_task()
    assert sim.commands_of(0) == [{"kind": "start_timer", "seq": 1, "duration_ms": 5000}]
    sim.fire(1)
    sim.run_task()
    assert sim.final == {"kind": "complete_workflow", "result": "timed out"}
    sim.check_replay()

    sim = EngineSim(asyncio_timeouts, how)
    sim.run_task()
    sim.signal("go", 1)
    sim.run_task()
    assert sim.commands_of(1) == [{"kind": "cancel_timer", "seq": 1},
                                  {"kind": "complete_workflow", "result": "go 1"}]
    sim.check_replay()


@workflow
async def call_later_direct(ctx: WorkflowContext, _: Any) -> list[str]:
    loop = asyncio.get_running_loop()
    seen: list[str] = []
    done = loop.create_future()
    loop.call_later(0, seen.append, "now")
    cancelled = loop.call_later(3, seen.append, "never")

    def at() -> None:
        seen.append("at")
        done.set_result(None)

    loop.call_at(loop.time() + 2, at)
    cancelled.cancel()
    await done
    return seen


def test_call_later_and_call_at_start_and_cancel_durable_timers() -> None:
    sim = simulate(call_later_direct)
    assert sim.commands_of(0) == [{"kind": "start_timer", "seq": 1, "duration_ms": 3000},
                                  {"kind": "start_timer", "seq": 2, "duration_ms": 2000},
                                  {"kind": "cancel_timer", "seq": 1}]
    assert sim.final["result"] == ["now", "at"]


# ---- non-determinism ------------------------------------------------------------------------

@workflow(name="nd")
async def calls_a(ctx: WorkflowContext, _: Any) -> str:
    await ctx.execute_activity("a")
    await ctx.sleep(1)
    return "done"


@workflow(name="nd")
async def calls_b(ctx: WorkflowContext, _: Any) -> str:
    await ctx.execute_activity("b")
    await ctx.sleep(1)
    return "done"


@workflow(name="nd")
async def calls_a_then_extra(ctx: WorkflowContext, _: Any) -> str:
    await ctx.execute_activity("a")
    await ctx.execute_activity("extra")
    await ctx.sleep(1)
    return "done"


@workflow(name="nd")
async def calls_a_and_more(ctx: WorkflowContext, _: Any) -> str:
    await ctx.execute_activity("a")
    nap = asyncio.create_task(ctx.sleep(1))
    await asyncio.sleep(0)  # the timer first, as before; then one command too many
    ctx.start_activity("extra")
    await nap
    return "done"


@workflow(name="nd")
async def sleeps_first(ctx: WorkflowContext, _: Any) -> str:
    await ctx.sleep(1)
    return "done"


def _half_run_of_calls_a() -> EngineSim:
    sim = EngineSim(calls_a)
    sim.run_task()
    sim.complete(1, "ok")
    sim.run_task()  # timer started: history holds two completed tasks
    return sim


@pytest.mark.parametrize(("changed", "expect"), [
    (calls_b, ["ActivityTaskScheduled(seq=1, 'a')", "schedule_activity(seq=1, 'b')"]),
    (calls_a_then_extra, ["TimerStarted(seq=2)", "schedule_activity(seq=2, 'extra')"]),
    (calls_a_and_more, ["schedule_activity(seq=3, 'extra')", "does not hold",
                        "before TimerFired"]),
    (sleeps_first, ["ActivityTaskScheduled(seq=1, 'a')", "start_timer(seq=1)"]),
])
def test_changed_code_is_nondeterministic(changed: Any, expect: list[str]) -> None:
    sim = _half_run_of_calls_a()
    sim.fire(2)
    wt = sim.state.workflow_task
    assert wt is not None
    sim.start_task()
    instance = WorkflowInstance(workflow_definition(changed), workflow_id="wf-1",
                                run_id="run-1", workflow_type="nd", task_queue="q")
    result = instance.activate(sim.history)
    assert result.cause == "nondeterminism"
    assert result.commands is None
    assert result.failure is not None and result.failure["type"] == "NonDeterminismError"
    for text in expect:
        assert text in result.failure["message"]
    # The broken instance stays broken.
    assert instance.activate(sim.history[-1:]).cause == "worker_error"


def test_nondeterminism_in_a_sticky_activation_fails_the_task_and_full_replay_recovers() -> None:
    sim = _half_run_of_calls_a()
    # The new code, as if deployed: the cached instance is gone, the worker replays.
    sim.definition = workflow_definition(calls_b)
    sim.instance = None
    sim.fire(2)
    result = sim.run_task()
    assert result.cause == "nondeterminism"
    assert sim.history[-2]["event_type"] == "WorkflowTaskFailed"
    assert sim.history[-2]["attributes"]["cause"] == "nondeterminism"
    # Deploying the old code back: the failed task is skipped in replay and the run finishes.
    sim.definition = workflow_definition(calls_a)
    sim.drive()
    assert sim.final == {"kind": "complete_workflow", "result": "done"}
    sim.check_replay()


# ---- the task lifecycle ------------------------------------------------------------------------

def test_a_timed_out_task_is_skipped_in_replay() -> None:
    sim = EngineSim(chain, "x")
    sim.run_task()
    sim.complete(1, "X")
    # The next task is started by a worker that dies: the engine times it out.
    scheduled = sim.start_task()
    sim._apply(decide.time_out_workflow_task(sim.state, scheduled_event_id=scheduled,
                                             now=sim.now))
    sim.instance = None  # another worker picks it up, from the full history
    sim.drive({"reverse": lambda s: s[::-1]})
    assert sim.final == {"kind": "complete_workflow", "result": ["X", "X", "X"]}
    assert "WorkflowTaskTimedOut" in history_types(sim)
    sim.check_replay()


def test_sticky_instance_whose_task_timed_out_asks_for_a_full_replay() -> None:
    sim = EngineSim(chain, "x")
    sim.run_task()
    instance = sim.instance
    assert instance is not None
    sim.complete(1, "X")
    scheduled = sim.start_task()
    batch = sim.history[sim.delivered:]
    result = instance.activate(batch)  # ran, but its completion is late:
    assert result.commands is not None
    sim._apply(decide.time_out_workflow_task(sim.state, scheduled_event_id=scheduled,
                                             now=sim.now))
    sim.start_task()
    late = sim.history[instance.next_event_id - 1:]
    result = instance.activate(late)
    assert result.cause == "worker_error"
    assert result.failure is not None and "full history" in result.failure["message"]


@workflow
async def finishes_fast(ctx: WorkflowContext, _: Any) -> int:
    return 1


def test_signal_during_the_closing_task_reruns_the_workflow() -> None:
    sim = EngineSim(finishes_fast)
    scheduled = sim.start_task()
    sim.signal("add", 5)  # arrives while the task runs
    sim.finish_task(scheduled)
    assert sim.history[-2]["event_type"] == "WorkflowTaskFailed"
    assert sim.history[-2]["attributes"]["cause"] == "unhandled_events"
    assert sim.instance is None  # finished instances are dropped: the rerun replays
    sim.drive()
    assert sim.final == {"kind": "complete_workflow", "result": 1}
    assert sim.batches[-1][0]["event_id"] == 1
    sim.check_replay()


def test_activate_from_inside_a_running_loop_restores_it() -> None:
    async def worker() -> list[Any]:
        outer = asyncio.get_running_loop()
        sim = EngineSim(fan_out, 3)
        sim.drive({"double": lambda i: i * 2})
        assert asyncio.get_running_loop() is outer
        assert asyncio.current_task() is not None
        await asyncio.sleep(0)
        return list(sim.final["result"])

    assert asyncio.run(worker()) == [0, 2, 4]


@workflow
async def asyncio_tools(ctx: WorkflowContext, _: Any) -> list[Any]:
    async def child(i: int) -> int:
        return int(await ctx.execute_activity("id", i))

    t1 = asyncio.create_task(child(1))
    shielded = asyncio.shield(child(2))
    done, _pending = await asyncio.wait([t1, shielded])
    async with asyncio.TaskGroup() as tg:
        t3 = tg.create_task(child(3))
        t4 = tg.create_task(child(4))
    event = asyncio.Event()
    asyncio.get_running_loop().call_soon(event.set)
    await event.wait()
    return [t1.result(), shielded.result(), t3.result(), t4.result(), len(done),
            asyncio.current_task() is not None]


def test_asyncio_gather_wait_shield_create_task_work() -> None:
    sim = simulate(asyncio_tools, None, {"id": lambda i: i})
    assert sim.final["result"] == [1, 2, 3, 4, 2, True]


@workflow
async def long_chain(ctx: WorkflowContext, n: int) -> int:
    total = 0
    for i in range(n):
        total += await ctx.execute_activity("inc", i)
    return total


def test_sticky_2000_sequential_activities() -> None:
    sim = EngineSim(long_chain, 2000).drive({"inc": lambda i: 1})
    assert sim.final == {"kind": "complete_workflow", "result": 2000}
    assert len(sim.sent) == 2001
    # Every sticky batch held only the new events: a handful, however long the history.
    assert len(sim.batches[0]) == 3
    assert max(len(b) for b in sim.batches[1:]) <= 6
    assert len(sim.history) > 10_000
    sim.check_replay()


def test_non_sticky_runs_send_the_same_commands() -> None:
    sticky = EngineSim(asyncio_tools).drive({"id": lambda i: i})
    full = EngineSim(asyncio_tools, sticky=False).drive({"id": lambda i: i})
    assert sticky.sent == full.sent
    assert all(b[0]["event_id"] == 1 for b in full.batches)


def test_misuse_of_activate_is_a_worker_error() -> None:
    instance = WorkflowInstance(workflow_definition(hello), workflow_id="w", run_id="r",
                                workflow_type="hello", task_queue="q")
    assert instance.activate([]).cause == "worker_error"
    sim = EngineSim(hello, "x")
    sim.start_task()
    fresh = WorkflowInstance(workflow_definition(hello), workflow_id="w", run_id="r",
                             workflow_type="hello", task_queue="q")
    result = fresh.activate(sim.history[1:])  # a sticky batch to a new instance
    assert result.cause == "worker_error"
    assert result.failure is not None and "expected" in result.failure["message"]


# ---- property: interleavings of signals and timers replay identically -----------------------

@workflow
async def collector(ctx: WorkflowContext, _: Any) -> list[Any]:
    got: list[Any] = []
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await ctx.sleep(7)
            ticks += 1

    background = asyncio.create_task(ticker())
    while True:
        try:
            sig = await ctx.wait_for_signal(timeout=10)
        except TimeoutError:
            got.append("timeout")
            continue
        if sig.name == "stop":
            break
        got.append([sig.name, sig.input, ctx.random().randint(0, 99)])
    background.cancel()
    return [got, ticks]


actions = st.lists(
    st.one_of(
        st.tuples(st.just("signal"), st.sampled_from(["a", "b"]), st.integers(0, 9)),
        st.tuples(st.just("fire"), st.integers(0, 3), st.just(0)),
        st.tuples(st.just("task"), st.just(""), st.just(0)),
        st.tuples(st.just("signal_during_task"), st.sampled_from(["a", "b"]), st.integers(0, 9)),
    ),
    max_size=25,
)


def _run_collector(plan: list[tuple[str, Any, int]], sticky: bool) -> EngineSim:
    sim = EngineSim(collector, sticky=sticky)
    sim.run_task()
    for action, arg, value in plan:
        wt = sim.state.workflow_task
        if action == "signal_during_task" and wt is not None and wt.started_event_id is None:
            scheduled = sim.start_task()
            sim.signal(arg, value)
            sim.finish_task(scheduled)
            continue
        if action in ("signal", "signal_during_task"):
            sim.signal(arg, value)
        elif action == "fire" and sim.state.timers:
            seqs = sorted(sim.state.timers)
            sim.fire(seqs[arg % len(seqs)])
        wt = sim.state.workflow_task
        if action == "task" and wt is not None and wt.started_event_id is None:
            sim.run_task()
    sim.signal("stop")
    sim.drive()
    return sim


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(actions)
def test_signals_and_timers_replay_identically(plan: list[tuple[str, Any, int]]) -> None:
    sticky = _run_collector(plan, sticky=True)
    assert sticky.status is Status.COMPLETED
    assert all(r.failure is None for r in sticky.results)
    sticky.check_replay()
    full = _run_collector(plan, sticky=False)
    assert full.sent == sticky.sent
    got, _ticks = sticky.final["result"]
    sent = [[n, v] for action, n, v in plan if action.startswith("signal")]
    assert [g[:2] for g in got if g != "timeout"] == sent  # none lost, none reordered


# ---- small pieces ------------------------------------------------------------------------------

def test_workflow_decorator_and_registry() -> None:
    assert workflow_definition(hello) == WorkflowDefinition("hello", hello)
    assert workflow_definition(chain).name == "chain.v1"
    with pytest.raises(TypeError):
        workflow_definition(lambda: None)
    with pytest.raises(TypeError):
        workflow(lambda ctx, x: x)
    assert set(workflow_registry([hello, chain])) == {"hello", "chain.v1"}
    with pytest.raises(ValueError, match="two workflows"):
        workflow_registry([calls_a, calls_b])


def test_retry_policy() -> None:
    policy = RetryPolicy(initial_interval=timedelta(milliseconds=500), backoff_coefficient=1.5,
                         maximum_interval=30, maximum_attempts=5,
                         non_retryable_error_types=["ValueError"])
    wire_form = policy.to_dict()
    assert wire_form == {"initial_interval_ms": 500, "backoff_coefficient": 1.5,
                         "maximum_interval_ms": 30_000, "maximum_attempts": 5,
                         "non_retryable_error_types": ["ValueError"]}
    assert c.RetryPolicy.from_dict(wire_form).to_dict() == wire_form
    for bad in [dict(initial_interval=0), dict(backoff_coefficient=0.5),
                dict(maximum_interval=0.5), dict(maximum_attempts=-1)]:
        with pytest.raises(ValueError):
            RetryPolicy(**bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        RetryPolicy(non_retryable_error_types="ValueError")


def test_failure_from_exception_and_errors() -> None:
    try:
        raise ApplicationError("nope", non_retryable=True, details=[1])
    except ApplicationError as exc:
        failure = failure_from_exception(exc)
    assert failure["type"] == "ApplicationError" and failure["non_retryable"] is True
    assert failure["details"] == [1] and "nope" in failure["stack"]
    assert failure_from_exception(KeyError("k"))["type"] == "KeyError"
    err = WorkflowFailureError("failed", {"type": "X", "message": "y"})
    assert str(err) == "workflow failed: X: y" and err.status == "failed"
    assert Signal("a") == Signal("a", None)
