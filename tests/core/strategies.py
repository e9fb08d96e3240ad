"""Hypothesis strategies for the pure core: commands, and valid runs driven through ``decide``.

A valid run is built the way the engine builds one: start, then a random sequence of
transitions chosen among those the current state allows (start or complete a workflow task
with random commands, fail or time it out, signal, cancel, close activities, fire timers...).
``Driver`` records every transition so tests can check each step and the whole history.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

from hypothesis import strategies as st

from sdk.protocol.names import name_problem
from workflows.core import commands as c
from workflows.core import decide
from workflows.core.events import CHILD_CLOSED_EVENTS, INPUT_EVENTS, Event, EventType
from workflows.core.state import ExecutionState

E = EventType
T = TypeVar("T")
Draw = Callable[[st.SearchStrategy[T]], T]

T0 = datetime(2024, 1, 1, tzinfo=UTC)

# What may name something (sdk.protocol.names): no control characters, no whitespace at
# either end, not "." or "..".
names = st.text(st.characters(codec="utf-8", exclude_categories=["Cs", "Cc"]), min_size=1,
                max_size=c.MAX_NAME_LENGTH).filter(lambda v: name_problem(v) is None)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner,
                                                                 max_size=3),
    max_leaves=6,
)
seqs = st.integers(1, 2**31 - 1)
CHILD_IDS = st.sampled_from(["kid-a", "kid-b", "kid-c"])
durations = st.integers(0, c.MAX_DURATION_MS)
optional_ms = st.none() | st.integers(1, c.MAX_DURATION_MS)


@st.composite
def retry_policies(draw: Draw[Any]) -> c.RetryPolicy:
    initial = draw(st.integers(1, 10**7))
    maximum = draw(st.none() | st.integers(initial, c.MAX_DURATION_MS))
    return c.RetryPolicy(
        initial_interval_ms=initial,
        backoff_coefficient=draw(st.floats(1.0, 100.0)),
        maximum_interval_ms=maximum,
        maximum_attempts=draw(st.integers(0, 1000)),
        non_retryable_error_types=tuple(draw(st.lists(names, max_size=3))),
    )


failures = st.builds(
    lambda t, m, d, nr: c.normalize_failure({"type": t, "message": m, "details": d,
                                             "non_retryable": nr}),
    names, st.text(max_size=20), json_values, st.booleans(),
)


def any_command() -> st.SearchStrategy[c.Command]:
    return st.one_of(
        st.builds(c.ScheduleActivity, seq=seqs, activity_type=names, input=json_values,
                  task_queue=st.none() | names, retry_policy=retry_policies(),
                  schedule_to_close_ms=optional_ms, schedule_to_start_ms=optional_ms,
                  start_to_close_ms=optional_ms, heartbeat_ms=optional_ms),
        st.builds(c.RequestCancelActivity, seq=seqs),
        st.builds(c.StartTimer, seq=seqs, duration_ms=durations),
        st.builds(c.CancelTimer, seq=seqs),
        st.builds(c.RecordMarker, seq=seqs, marker_name=names, data=json_values),
        st.builds(c.CompleteWorkflow, result=json_values),
        st.builds(c.FailWorkflow, failure=failures),
        st.builds(c.CancelWorkflow, details=json_values),
        st.builds(c.ContinueAsNew, input=json_values, workflow_type=st.none() | names,
                  task_queue=st.none() | names),
        st.builds(c.StartChildWorkflow, seq=seqs, workflow_type=names, workflow_id=names,
                  input=json_values, task_queue=st.none() | names,
                  execution_timeout_ms=optional_ms,
                  parent_close_policy=st.sampled_from(c.PARENT_CLOSE_POLICIES)),
        st.builds(c.SignalExternalWorkflow, seq=seqs, workflow_id=names, signal_name=names,
                  input=json_values, run_id=st.none() | st.uuids().map(str)),
        st.builds(c.RequestCancelExternalWorkflow, seq=seqs, workflow_id=names,
                  run_id=st.none() | st.uuids().map(str)),
        st.builds(c.CompleteUpdate, update_id=names, result=json_values, failure=st.none()),
        st.builds(c.CompleteUpdate, update_id=names, failure=failures),
    )


# ---- driving valid runs --------------------------------------------------------------------


@dataclass
class Step:
    op: str
    before: ExecutionState
    transition: decide.Transition
    detail: dict[str, Any] = field(default_factory=dict)


OUTCOMES = (E.ACTIVITY_TASK_COMPLETED, E.ACTIVITY_TASK_FAILED, E.ACTIVITY_TASK_TIMED_OUT,
            E.ACTIVITY_TASK_CANCELED)


class Driver:
    """Builds one valid run by choosing, at each step, among the transitions its state allows."""

    def __init__(self, draw: Draw[Any], *, closing_weight: int = 1) -> None:
        """``closing_weight`` weighs closing commands against open ones (20 to 3 at 1)."""
        self.draw = draw
        self.closing_weight = closing_weight
        self.clock = 0
        # Some runs begin as a signal-with-start: the signal right after the start.
        start_signal = draw(st.sampled_from([None, None, None, "go"]))
        first = decide.start(workflow_type="Order", task_queue="main", input={"id": 1},
                             now=self.now(), start_signal=start_signal,
                             start_signal_input=None if start_signal is None else [1])
        self.state = first.state
        self.events: list[Event] = list(first.events)
        self.steps: list[Step] = [Step("start", ExecutionState(), first)]

    def now(self) -> datetime:
        self.clock += 1
        return T0 + timedelta(seconds=self.clock)

    def options(self) -> list[str]:
        s = self.state
        if not s.is_open:
            return []
        if self.draw(st.sampled_from(range(40))) == 17:  # rarely, the run is closed from outside
            return ["terminate", "time_out_workflow"]
        ops: list[str] = []
        wt = s.workflow_task
        if wt is not None and wt.started_event_id is None:
            ops += ["start_workflow_task"] * 4
        if wt is not None and wt.started_event_id is not None:
            ops += ["complete_workflow_task"] * 6 + ["fail_workflow_task",
                                                     "time_out_workflow_task"]
        if wt is None and s.workflow_task_needed:
            ops += ["retry_workflow_task"] * 2
        if s.activities:
            ops += ["close_activity"] * 3
        if s.timers:
            ops += ["fire_timer"] * 2
        if any(child.run_id for child in s.children.values()):
            ops += ["child_closed"] * 2
        if s.external:
            ops += ["child_signaled"]
        ops += ["signal", "request_cancel", "accept_update"]
        return ops

    def step(self) -> Step | None:
        ops = self.options()
        if not ops:
            return None
        op = self.draw(st.sampled_from(ops))
        before = self.state
        detail: dict[str, Any] = {}
        t = getattr(self, "_" + op)(before, detail)
        step = Step(op, before, t, detail)
        self.steps.append(step)
        self.events.extend(t.events)
        self.state = t.state
        return step

    def run(self, max_steps: int, check: Callable[[Driver, Step], None] | None = None) -> None:
        for _ in range(max_steps):
            step = self.step()
            if step is None:
                return
            if check is not None:
                check(self, step)

    # ---- the transitions -------------------------------------------------------------------

    def _signal(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        return decide.signal(s, name=self.draw(st.sampled_from(["go", "stop"])),
                             input=self.draw(json_values), now=self.now())

    def _accept_update(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        update_id = self.draw(st.sampled_from(["u1", "u2", "u3"]))
        d["update_id"] = update_id
        return decide.accept_update(s, update_id=update_id, name="add", args=[1],
                                    now=self.now())

    def _request_cancel(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        return decide.request_cancel(s, reason=self.draw(st.none() | st.just("user")),
                                     now=self.now())

    def _terminate(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        return decide.terminate(s, reason="admin", now=self.now())

    def _time_out_workflow(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        return decide.time_out_workflow(s, now=self.now())

    def _start_workflow_task(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        assert s.workflow_task is not None
        return decide.start_workflow_task(s, scheduled_event_id=s.workflow_task.scheduled_event_id,
                                          worker="w1", now=self.now())

    def _fail_workflow_task(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        assert s.workflow_task is not None
        return decide.fail_workflow_task(s, scheduled_event_id=s.workflow_task.scheduled_event_id,
                                         cause="nondeterminism",
                                         failure={"type": "NonDeterminism"}, now=self.now())

    def _time_out_workflow_task(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        assert s.workflow_task is not None
        return decide.time_out_workflow_task(
            s, scheduled_event_id=s.workflow_task.scheduled_event_id, now=self.now())

    def _retry_workflow_task(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        return decide.retry_workflow_task(s, now=self.now())

    def _complete_workflow_task(self, s: ExecutionState,
                                d: dict[str, Any]) -> decide.Transition:
        assert s.workflow_task is not None
        cmds = self.commands(s)
        d["commands"] = cmds
        run_ids = {cmd.seq: self.draw(st.sampled_from([None, f"run-{cmd.seq}",
                                                       f"run-{cmd.seq}"]))
                   for cmd in cmds if isinstance(cmd, c.StartChildWorkflow)}
        d["child_run_ids"] = run_ids
        return decide.complete_workflow_task(
            s, scheduled_event_id=s.workflow_task.scheduled_event_id, commands=cmds,
            worker="w1", now=self.now(), child_run_ids=run_ids)

    def _child_closed(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        child = self.draw(st.sampled_from([ch for ch in s.children.values() if ch.run_id]))
        outcome = self.draw(st.sampled_from(CHILD_CLOSED_EVENTS))
        d.update(seq=child.seq, outcome=outcome)
        return decide.child_closed(s, workflow_id=child.workflow_id, run_id="last",
                                   outcome=outcome, now=self.now(), result=1,
                                   failure={"type": "E"}, details=None, reason="r")

    def _child_signaled(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        seq = self.draw(st.sampled_from(sorted(s.external)))
        outcome = self.draw(st.sampled_from([None, "run"]))
        d.update(seq=seq, outcome=(E.EXTERNAL_WORKFLOW_EXECUTION_SIGNALED if outcome
                                   else E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED))
        return decide.child_signaled(s, seq=seq, run_id=outcome, now=self.now())

    def _close_activity(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        seq = self.draw(st.sampled_from(sorted(s.activities)))
        outcome = self.draw(st.sampled_from(OUTCOMES))
        attrs: dict[str, Any] = {
            E.ACTIVITY_TASK_COMPLETED: {"result": self.draw(json_values)},
            E.ACTIVITY_TASK_FAILED: {"failure": {"type": "E", "message": "m"}},
            E.ACTIVITY_TASK_TIMED_OUT: {"timeout_type": "start_to_close",
                                        "failure": {"type": "TimeoutError"}},
            E.ACTIVITY_TASK_CANCELED: {"details": None},
        }[outcome]
        d.update(seq=seq, outcome=outcome)
        return decide.close_activity(s, seq=seq, outcome=outcome, now=self.now(),
                                     attempt=self.draw(st.integers(1, 5)),
                                     worker=self.draw(st.none() | st.just("w2")), **attrs)

    def _fire_timer(self, s: ExecutionState, d: dict[str, Any]) -> decide.Transition:
        seq = self.draw(st.sampled_from(sorted(s.timers)))
        d["seq"] = seq
        return decide.fire_timer(s, seq=seq, now=self.now())

    def commands(self, s: ExecutionState) -> list[c.Command]:
        """A valid command list: fresh seqs above max_seq, cancels of pending (or just
        started) timers and activities, at most one closing command, last."""
        draw = self.draw
        seq = s.max_seq
        timers = set(s.timers)
        activities = set(s.activities)
        cmds: list[c.Command] = []
        for _ in range(draw(st.integers(0, 4))):
            kind = draw(st.sampled_from(["activity", "activity", "timer", "marker",
                                         "cancel_timer", "cancel_activity", "child",
                                         "signal_child", "cancel_child"]))
            if kind in ("activity", "timer", "marker", "child", "signal_child", "cancel_child"):
                seq += draw(st.integers(1, 3))
            if kind == "child":
                cmds.append(c.StartChildWorkflow(
                    seq=seq, workflow_type="Child", workflow_id=draw(CHILD_IDS),
                    parent_close_policy=draw(st.sampled_from(c.PARENT_CLOSE_POLICIES))))
            elif kind == "signal_child":
                cmds.append(c.SignalExternalWorkflow(seq=seq, workflow_id=draw(CHILD_IDS),
                                                     signal_name="go"))
            elif kind == "cancel_child":
                cmds.append(c.RequestCancelExternalWorkflow(seq=seq,
                                                            workflow_id=draw(CHILD_IDS)))
            elif kind == "activity":
                cmds.append(c.ScheduleActivity(seq=seq, activity_type="charge", input=seq))
                activities.add(seq)
            elif kind == "timer":
                cmds.append(c.StartTimer(seq=seq, duration_ms=draw(st.integers(0, 10**6))))
                timers.add(seq)
            elif kind == "marker":
                cmds.append(c.RecordMarker(seq=seq, marker_name="m", data=None))
            elif kind == "cancel_timer":
                target = draw(st.sampled_from(sorted(timers))) if timers else seq + 1
                cmds.append(c.CancelTimer(seq=target))
            else:
                target = draw(st.sampled_from(sorted(activities))) if activities else seq + 1
                cmds.append(c.RequestCancelActivity(seq=target))
        for update_id in sorted(s.updates):  # some pending updates complete, some fail
            outcome = draw(st.sampled_from(["wait", "complete", "fail"]))
            if outcome == "complete":
                cmds.append(c.CompleteUpdate(update_id=update_id, result=update_id))
            elif outcome == "fail":
                cmds.append(c.CompleteUpdate(update_id=update_id, failure=c.normalize_failure(
                    {"type": "Rejected", "message": "no"})))
        closing = draw(st.sampled_from(
            [None] * 20 + ["complete", "fail", "cancel"] * self.closing_weight))
        if closing == "complete":
            cmds.append(c.CompleteWorkflow(result="done"))
        elif closing == "fail":
            cmds.append(c.FailWorkflow(failure=c.normalize_failure({"type": "Boom"})))
        elif closing == "cancel":
            cmds.append(c.CancelWorkflow(details=None))
        return cmds


@st.composite
def runs(draw: Draw[Any], max_steps: int = 40) -> Driver:
    """A valid run: its ``events`` and final ``state`` (and every step taken)."""
    driver = Driver(draw)
    driver.run(draw(st.integers(0, max_steps)))
    return driver


def unseen_input(events: list[Event]) -> bool:
    """Whether an input event came after the last WorkflowTaskStarted."""
    last_started = max((e.event_id for e in events if e.event_type is E.WORKFLOW_TASK_STARTED),
                       default=0)
    return any(e.event_type in INPUT_EVENTS and e.event_id > last_started for e in events)


def retry_pending(events: list[Event]) -> bool:
    """Whether the last workflow task ended in a failure whose retry waits on a back-off."""
    for e in reversed(events):
        if e.event_type in (E.WORKFLOW_TASK_SCHEDULED, E.WORKFLOW_TASK_COMPLETED,
                            E.WORKFLOW_TASK_TIMED_OUT):
            return False
        if e.event_type is E.WORKFLOW_TASK_FAILED:
            return bool(e.attributes["cause"] != "unhandled_events")
    return False
