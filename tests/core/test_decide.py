"""Transitions decided on random valid runs keep the engine's rules."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflows.core import commands as c
from workflows.core import decide
from workflows.core import effects as fx
from workflows.core.events import CLOSING_EVENTS, INPUT_EVENTS, Event, EventType
from workflows.core.state import ExecutionState, Status, fold

from .strategies import T0, Driver, Step, retry_pending, runs, unseen_input

E = EventType
RUN_SETTINGS = settings(max_examples=120, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


def types(events: list[Event]) -> list[EventType]:
    return [e.event_type for e in events]


def every_decision(state: ExecutionState, now: datetime) -> list[Callable[[], Any]]:
    """Every decide function, called as the engine would on ``state``."""
    wt = state.workflow_task
    sid = wt.scheduled_event_id if wt else 2
    seq = next(iter(state.activities), 1)
    return [
        lambda: decide.signal(state, name="s", input=None, now=now),
        lambda: decide.request_cancel(state, reason=None, now=now),
        lambda: decide.terminate(state, reason=None, now=now),
        lambda: decide.time_out_workflow(state, now=now),
        lambda: decide.start_workflow_task(state, scheduled_event_id=sid, worker="w", now=now),
        lambda: decide.fail_workflow_task(state, scheduled_event_id=sid, cause="x", failure={},
                                          now=now),
        lambda: decide.time_out_workflow_task(state, scheduled_event_id=sid, now=now),
        lambda: decide.retry_workflow_task(state, now=now),
        lambda: decide.complete_workflow_task(state, scheduled_event_id=sid,
                                              commands=[c.CompleteWorkflow()], worker="w",
                                              now=now),
        lambda: decide.complete_workflow_task(state, scheduled_event_id=sid, commands=[],
                                              worker="w", now=now),
        lambda: decide.close_activity(state, seq=seq, outcome=E.ACTIVITY_TASK_COMPLETED,
                                      now=now, attempt=1, worker="w", result=None),
        lambda: decide.fire_timer(state, seq=next(iter(state.timers), 1), now=now),
    ]


def check_children(before: ExecutionState, step: Step, cmds: list[c.Command]) -> None:
    """A task's child starts: one Initiated each; a child whose id is free (not drawn as
    taken, not started twice) starts (StartChild), else its start fails unless the task
    closed the run; every started child is pending with its run id."""
    t, state = step.transition, step.transition.state
    if t.events[0].event_type is not E.WORKFLOW_TASK_COMPLETED:
        return
    starts = [cmd for cmd in cmds if isinstance(cmd, c.StartChildWorkflow)]
    initiated = [e for e in t.events if e.event_type is E.START_CHILD_WORKFLOW_EXECUTION_INITIATED]
    assert [e.attributes["seq"] for e in initiated] == [cmd.seq for cmd in starts]
    started = [e for e in t.effects if isinstance(e, fx.StartChild)]
    free: list[str] = []
    for cmd in starts:
        if step.detail["child_run_ids"][cmd.seq] is not None and cmd.workflow_id not in free:
            free.append(cmd.workflow_id)
    assert [e.workflow_id for e in started] == free
    closed = not state.is_open
    assert all(e.parent_closed == closed for e in started)
    if not closed:
        for e in started:
            assert any(ch.run_id == e.run_id for ch in state.children.values())
        failed = [e for e in t.events if e.event_type is E.START_CHILD_WORKFLOW_EXECUTION_FAILED]
        assert len(failed) == len(starts) - len(started)
    else:
        assert not any(e.event_type in INPUT_EVENTS for e in t.events)


def check_step(driver: Driver, step: Step) -> None:
    t, before, state = step.transition, step.before, driver.state
    # Dense ids, continuing the history; one timestamp per transition.
    assert [e.event_id for e in t.events] == list(
        range(before.next_event_id, before.next_event_id + len(t.events)))
    assert {e.timestamp for e in t.events} <= {t.now}
    assert state.next_event_id == len(driver.events) + 1
    # The state decided equals the fold of the history.
    assert fold(driver.events).to_dict() == state.to_dict()
    # Nothing appended after a closing event; only the last event of a history may close it.
    closing = [i for i, e in enumerate(driver.events) if e.event_type in CLOSING_EVENTS]
    assert closing in ([], [len(driver.events) - 1])
    assert state.is_open == (not closing)

    if state.is_open:
        wt = state.workflow_task
        # No run is left stranded: news is always seen by a workflow task, now or after the
        # back-off of a failed one.
        if wt is None and state.workflow_task_needed:
            assert retry_pending(driver.events), "needs a workflow task but none is coming"
        if unseen_input(driver.events):
            covered = wt is not None and (wt.started_event_id is None
                                          or state.workflow_task_needed)
            assert covered or retry_pending(driver.events)
    else:
        assert state.workflow_task is None and not state.activities and not state.timers
        assert not state.children and not state.external
        for call in every_decision(state, t.now):
            with pytest.raises(decide.Rejected) as info:
                call()
            assert info.value.code == "run_closed"
        assert state.next_event_id == len(driver.events) + 1

    if step.op == "complete_workflow_task":
        cmds = step.detail["commands"]
        closes = bool(cmds) and isinstance(cmds[-1], c.TERMINAL_COMMANDS)
        if closes and before.workflow_task_needed:
            # News arrived during the task: the close is thrown away and the task runs again.
            assert types(t.events) == [E.WORKFLOW_TASK_FAILED, E.WORKFLOW_TASK_SCHEDULED]
            assert t.events[0].attributes["cause"] == "unhandled_events"
            assert state.is_open and state.workflow_task is not None
            assert state.workflow_task.started_event_id is None
        elif closes:
            assert t.events[0].event_type is E.WORKFLOW_TASK_COMPLETED
            assert not state.is_open
            assert state.status is {c.CompleteWorkflow: Status.COMPLETED,
                                    c.FailWorkflow: Status.FAILED,
                                    c.CancelWorkflow: Status.CANCELED}[type(cmds[-1])]
        elif isinstance(cmds[-1:] and cmds[-1], c.ContinueAsNew):
            assert t.events[0].event_type is E.WORKFLOW_TASK_COMPLETED
        else:
            assert t.events[0].event_type is E.WORKFLOW_TASK_COMPLETED
            assert state.is_open
            # A new task is scheduled exactly when news arrived during this one, or the
            # engine answered one of its commands (a child started, a signal that failed).
            answered = any(e.event_type in INPUT_EVENTS for e in t.events)
            assert (state.workflow_task is not None) == (before.workflow_task_needed
                                                         or answered)
        check_children(before, step, cmds)
    if not state.is_open and before.is_open:
        # Closing applies the close policy to every started child, by its policy.
        acts = {(e.workflow_id, e.payload["policy"]) for e in t.effects
                if isinstance(e, fx.ActOnChild) and e.kind is fx.TimerKind.PARENT_CLOSE_POLICY}
        assert acts == {(ch.workflow_id, ch.parent_close_policy)
                        for ch in before.children.values()
                        if ch.run_id and ch.parent_close_policy != "abandon"}
    if step.op in ("signal", "fire_timer", "close_activity", "child_closed",
                   "child_signaled") or (
            step.op == "request_cancel" and not before.cancel_requested):
        assert any(e.event_type in (E.WORKFLOW_EXECUTION_SIGNALED, E.TIMER_FIRED,
                                    E.WORKFLOW_EXECUTION_CANCEL_REQUESTED,
                                    step.detail.get("outcome")) for e in t.events)


@given(st.data())
@RUN_SETTINGS
def test_random_runs_keep_the_rules(data: st.DataObject) -> None:
    driver = Driver(data.draw)
    check_step(driver, driver.steps[0])
    driver.run(60, check_step)


@given(st.data())
@settings(max_examples=60, deadline=None)
def test_random_runs_that_close_keep_the_rules(data: st.DataObject) -> None:
    driver = Driver(data.draw, closing_weight=6)
    driver.run(60, check_step)


@given(runs())
@RUN_SETTINGS
def test_a_stale_workflow_task_is_rejected(driver: Driver) -> None:
    s = driver.state
    now = T0
    wt = s.workflow_task
    stale_ids = [0, -1, s.next_event_id, s.next_event_id + 5]
    if wt is not None:
        stale_ids.append(wt.scheduled_event_id + 1)
        stale_ids.append(wt.scheduled_event_id - 1)
    calls: list[Callable[[int], Any]] = [
        lambda sid: decide.complete_workflow_task(s, scheduled_event_id=sid, commands=[],
                                                  worker="w", now=now),
        lambda sid: decide.start_workflow_task(s, scheduled_event_id=sid, worker="w", now=now),
        lambda sid: decide.fail_workflow_task(s, scheduled_event_id=sid, cause="x", failure={},
                                              now=now),
        lambda sid: decide.time_out_workflow_task(s, scheduled_event_id=sid, now=now),
    ]
    expected = "stale_task" if s.is_open else "run_closed"
    for sid in stale_ids:
        if wt is not None and sid == wt.scheduled_event_id:
            continue
        for call in calls:
            with pytest.raises(decide.Rejected) as info:
                call(sid)
            assert info.value.code == expected
    if s.is_open and wt is not None:
        # The right id but the wrong phase: complete a task not started, start one started.
        started = wt.started_event_id is not None
        wrong = calls[1] if started else calls[0]
        with pytest.raises(decide.Rejected) as info:
            wrong(wt.scheduled_event_id)
        assert info.value.code == "stale_task"


def test_a_signal_with_start_records_the_signal_before_the_first_workflow_task() -> None:
    t = decide.start(workflow_type="W", task_queue="q", input=1, now=T0, start_signal="go",
                     start_signal_input={"n": 2})
    assert types(t.events) == [E.WORKFLOW_EXECUTION_STARTED, E.WORKFLOW_EXECUTION_SIGNALED,
                               E.WORKFLOW_TASK_SCHEDULED]
    assert t.events[1].attributes == {"signal_name": "go", "input": {"n": 2}}
    assert t.state == fold(t.events)
    assert t.state.workflow_task is not None and t.state.workflow_task.scheduled_event_id == 3
    assert not t.state.workflow_task_needed
    plain = decide.start(workflow_type="W", task_queue="q", input=1, now=T0)
    assert [type(e) for e in t.effects] == [type(e) for e in plain.effects]  # one task, same


def started_run(*cmds_before: list[c.Command]) -> ExecutionState:
    """A run with a started workflow task, after completing earlier tasks with ``cmds``."""
    s = decide.start(workflow_type="W", task_queue="q", input=None, now=T0).state
    for cmds in (*cmds_before, None):
        assert s.workflow_task is not None
        s = decide.start_workflow_task(s, scheduled_event_id=s.workflow_task.scheduled_event_id,
                                       worker="w", now=T0).state
        if cmds is None:
            return s
        s = complete(s, cmds).state
        s = decide.signal(s, name="next", input=None, now=T0).state
    raise AssertionError("unreachable")


def complete(s: ExecutionState, cmds: list[c.Command]) -> decide.Transition:
    assert s.workflow_task is not None
    return decide.complete_workflow_task(s, scheduled_event_id=s.workflow_task.scheduled_event_id,
                                         commands=cmds, worker="w", now=T0)


@pytest.mark.parametrize("cmds", [
    [c.CompleteWorkflow(), c.StartTimer(seq=1, duration_ms=5)],
    [c.FailWorkflow(failure={}), c.RecordMarker(seq=1, marker_name="m")],
    [c.CompleteWorkflow(), c.CompleteWorkflow()],
    [c.CancelWorkflow(), c.FailWorkflow(failure={})],
    [c.ContinueAsNew(), c.CompleteWorkflow()],
    [c.CompleteWorkflow(), c.ContinueAsNew()],
])
def test_a_closing_command_must_be_last_and_alone(cmds: list[c.Command]) -> None:
    s = started_run()
    with pytest.raises(decide.Rejected) as info:
        complete(s, cmds)
    assert info.value.code == "invalid_command"


def test_continue_as_new_is_left_to_the_service() -> None:
    with pytest.raises(decide.Rejected) as info:
        complete(started_run(), [c.ContinueAsNew(input=1)])
    assert info.value.code == "invalid_command"


@pytest.mark.parametrize("make", [
    lambda seq: c.ScheduleActivity(seq=seq, activity_type="a"),
    lambda seq: c.StartTimer(seq=seq, duration_ms=1),
    lambda seq: c.RecordMarker(seq=seq, marker_name="m"),
])
@pytest.mark.parametrize("earlier", ["activity", "timer", "marker"])
def test_seq_must_rise_above_max_seq(make: Callable[[int], c.Command], earlier: str) -> None:
    firsts: dict[str, c.Command] = {
        "activity": c.ScheduleActivity(seq=5, activity_type="a"),
        "timer": c.StartTimer(seq=5, duration_ms=10),
        "marker": c.RecordMarker(seq=5, marker_name="m"),
    }
    first = firsts[earlier]
    s = started_run([first])
    assert s.max_seq == 5
    for seq in (1, 4, 5):
        with pytest.raises(decide.Rejected) as info:
            complete(s, [make(seq)])
        assert info.value.code == "invalid_command"
    # Within one task too: the second use of a seq is refused, and nothing is decided.
    with pytest.raises(decide.Rejected):
        complete(s, [make(6), make(6)])
    with pytest.raises(decide.Rejected):
        complete(s, [make(8), make(7)])
    assert complete(s, [make(6), make(9)]).state.max_seq == 9


def test_a_signal_during_a_closing_task_is_never_lost() -> None:
    s = started_run()
    s = decide.signal(s, name="late", input=1, now=T0).state
    t = complete(s, [c.StartTimer(seq=1, duration_ms=5), c.CompleteWorkflow(result=1)])
    assert types(t.events) == [E.WORKFLOW_TASK_FAILED, E.WORKFLOW_TASK_SCHEDULED]
    assert t.events[0].attributes["cause"] == "unhandled_events"
    assert t.state.is_open and not t.state.timers  # the task's commands are discarded
    s = t.state
    assert s.workflow_task is not None
    s = decide.start_workflow_task(s, scheduled_event_id=s.workflow_task.scheduled_event_id,
                                   worker="w", now=T0).state
    t = complete(s, [c.CompleteWorkflow(result=2)])
    assert types(t.events) == [E.WORKFLOW_TASK_COMPLETED, E.WORKFLOW_EXECUTION_COMPLETED]
    assert t.state.status is Status.COMPLETED


def test_news_during_a_task_schedules_the_next_one_on_completion() -> None:
    s = started_run()
    s = decide.request_cancel(s, reason="user", now=T0).state
    assert s.workflow_task_needed
    t = complete(s, [c.StartTimer(seq=1, duration_ms=5)])
    assert types(t.events) == [E.WORKFLOW_TASK_COMPLETED, E.TIMER_STARTED,
                               E.WORKFLOW_TASK_SCHEDULED]


def test_request_cancel_is_recorded_once() -> None:
    s = started_run()
    t = decide.request_cancel(s, reason="a", now=T0)
    assert types(t.events) == [E.WORKFLOW_EXECUTION_CANCEL_REQUESTED]
    again = decide.request_cancel(t.state, reason="b", now=T0)
    assert again.events == [] and again.state == t.state


def test_cancel_of_a_timer_or_activity_not_pending_records_nothing() -> None:
    s = started_run([c.StartTimer(seq=1, duration_ms=5),
                     c.ScheduleActivity(seq=2, activity_type="a")])
    s = decide.fire_timer(s, seq=1, now=T0).state
    s = decide.close_activity(s, seq=2, outcome=E.ACTIVITY_TASK_COMPLETED, now=T0, attempt=1,
                              worker=None, result=None).state
    t = complete(s, [c.CancelTimer(seq=1), c.RequestCancelActivity(seq=2),
                     c.CancelTimer(seq=99), c.RequestCancelActivity(seq=99)])
    assert types(t.events) == [E.WORKFLOW_TASK_COMPLETED, E.WORKFLOW_TASK_SCHEDULED]


def test_activity_cancel_is_requested_once() -> None:
    s = started_run([c.ScheduleActivity(seq=1, activity_type="a")])
    t = complete(s, [c.RequestCancelActivity(seq=1), c.RequestCancelActivity(seq=1)])
    # The request is not news for the workflow: its answer (ActivityTaskCanceled) will be.
    assert types(t.events) == [E.WORKFLOW_TASK_COMPLETED, E.ACTIVITY_TASK_CANCEL_REQUESTED]
    assert t.state.activities[1].cancel_requested and t.state.workflow_task is None


def test_close_activity_writes_started_only_for_a_worker_and_fails_unknown_seq() -> None:
    s = started_run([c.ScheduleActivity(seq=1, activity_type="a")])
    with_worker = decide.close_activity(s, seq=1, outcome=E.ACTIVITY_TASK_FAILED, now=T0,
                                        attempt=3, worker="w9", failure={"type": "E"})
    assert types(with_worker.events)[:2] == [E.ACTIVITY_TASK_STARTED, E.ACTIVITY_TASK_FAILED]
    assert with_worker.events[0].attributes["attempt"] == 3
    assert with_worker.events[1].attributes["attempt"] == 3
    without = decide.close_activity(s, seq=1, outcome=E.ACTIVITY_TASK_CANCELED, now=T0,
                                    attempt=1, worker=None, details=None)
    assert types(without.events)[0] is E.ACTIVITY_TASK_CANCELED
    with pytest.raises(decide.Rejected) as info:
        decide.close_activity(s, seq=2, outcome=E.ACTIVITY_TASK_COMPLETED, now=T0, attempt=1,
                              worker=None, result=None)
    assert info.value.code == "stale_task"
    with pytest.raises(decide.Rejected) as info:
        decide.fire_timer(s, seq=1, now=T0)
    assert info.value.code == "stale_timer"


def test_failed_workflow_task_waits_for_its_retry_and_attempts_count_up() -> None:
    s = started_run()
    assert s.workflow_task is not None
    for attempt in (1, 2, 3):
        assert s.workflow_task is not None and s.workflow_task.attempt == attempt
        t = decide.fail_workflow_task(s, scheduled_event_id=s.workflow_task.scheduled_event_id,
                                      cause="bug", failure={"message": "x"}, now=T0)
        assert types(t.events) == [E.WORKFLOW_TASK_FAILED]
        assert t.state.workflow_task is None and t.state.workflow_task_needed
        t = decide.retry_workflow_task(t.state, now=T0)
        assert types(t.events) == [E.WORKFLOW_TASK_SCHEDULED]
        assert t.events[0].attributes["attempt"] == attempt + 1
        s = t.state
        assert s.workflow_task is not None
        s = decide.start_workflow_task(s, scheduled_event_id=s.workflow_task.scheduled_event_id,
                                       worker="w", now=T0).state
    # A completion resets the attempt count; a retry with nothing to do decides nothing.
    s = complete(s, []).state
    assert s.workflow_task_attempt == 1
    assert decide.retry_workflow_task(s, now=T0).events == []


def test_workflow_task_retry_delay_doubles_and_caps() -> None:
    delays = [decide.workflow_task_retry_delay_ms(n) for n in range(1, 12)]
    assert delays[:4] == [200, 400, 800, 1600]
    assert delays[-1] == decide.WORKFLOW_TASK_RETRY_MAX_MS
    assert decide.workflow_task_retry_delay_ms(10**6) == decide.WORKFLOW_TASK_RETRY_MAX_MS
