"""The state fold and its JSON snapshot."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from workflows.core.events import Event, EventType
from workflows.core.state import ExecutionState, FoldError, Status, apply, fold

from .strategies import T0, Driver, runs

E = EventType
RUN_SETTINGS = settings(max_examples=100, deadline=None,
                        suppress_health_check=[HealthCheck.too_slow])


@given(runs())
@RUN_SETTINGS
def test_fold_of_the_history_is_the_decided_state(driver: Driver) -> None:
    assert fold(driver.events) == driver.state
    assert fold(driver.events).to_dict() == driver.state.to_dict()
    assert [e.event_id for e in driver.events] == list(range(1, len(driver.events) + 1))


@given(runs(), st.data())
@RUN_SETTINGS
def test_fold_resumes_from_any_snapshot(driver: Driver, data: st.DataObject) -> None:
    k = data.draw(st.integers(0, len(driver.events)))
    snapshot = ExecutionState.from_dict(json.loads(json.dumps(fold(driver.events[:k]).to_dict())))
    assert fold(driver.events[k:], snapshot) == driver.state


@given(runs())
@RUN_SETTINGS
def test_snapshot_round_trips_through_json(driver: Driver) -> None:
    s = driver.state
    assert ExecutionState.from_dict(s.to_dict()) == s
    assert ExecutionState.from_dict(json.loads(json.dumps(s.to_dict()))) == s
    for step in driver.steps:
        before = step.before
        assert ExecutionState.from_dict(json.loads(json.dumps(before.to_dict()))) == before


def ev(event_id: int, event_type: EventType, **attributes: object) -> Event:
    return Event(event_id, event_type, T0, dict(attributes))


STARTED = ev(1, E.WORKFLOW_EXECUTION_STARTED, workflow_type="W", task_queue="q", input=None,
             execution_timeout_ms=None, parent=None, continued_from_run_id=None)


def test_fold_of_a_start() -> None:
    s = fold([STARTED, ev(2, E.WORKFLOW_TASK_SCHEDULED, task_queue="q", attempt=1)])
    assert s.status is Status.RUNNING and s.next_event_id == 3
    assert (s.workflow_type, s.task_queue) == ("W", "q")
    assert s.workflow_task is not None and s.workflow_task.scheduled_event_id == 2


@pytest.mark.parametrize("event_id", [0, 2, 3, 100])
def test_apply_refuses_a_non_dense_id(event_id: int) -> None:
    with pytest.raises(FoldError):
        apply(ExecutionState(), replace(STARTED, event_id=event_id))
    s = apply(ExecutionState(), STARTED)
    with pytest.raises(FoldError):
        apply(s, ev(event_id if event_id != 2 else 1, E.WORKFLOW_EXECUTION_SIGNALED,
                    signal_name="s", input=None))


def test_a_history_starts_with_workflow_execution_started() -> None:
    with pytest.raises(FoldError):
        apply(ExecutionState(), ev(1, E.WORKFLOW_TASK_SCHEDULED, task_queue="q", attempt=1))


@pytest.mark.parametrize("closing", [
    ev(2, E.WORKFLOW_EXECUTION_COMPLETED, result=None),
    ev(2, E.WORKFLOW_EXECUTION_FAILED, failure={}),
    ev(2, E.WORKFLOW_EXECUTION_CANCELED, details=None),
    ev(2, E.WORKFLOW_EXECUTION_TERMINATED, reason=None),
    ev(2, E.WORKFLOW_EXECUTION_TIMED_OUT),
    ev(2, E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW, new_run_id="x", workflow_type="W",
       task_queue="q", input=None),
])
def test_apply_refuses_any_event_after_close(closing: Event) -> None:
    s = fold([STARTED, closing])
    assert not s.is_open and s.next_event_id == 3
    for event in (ev(3, E.WORKFLOW_EXECUTION_SIGNALED, signal_name="s", input=None),
                  ev(3, E.WORKFLOW_TASK_SCHEDULED, task_queue="q", attempt=1),
                  ev(3, E.WORKFLOW_EXECUTION_COMPLETED, result=None)):
        with pytest.raises(FoldError):
            apply(s, event)


@pytest.mark.parametrize("event", [
    ev(2, E.WORKFLOW_TASK_STARTED, scheduled_event_id=5, attempt=1, worker="w"),
    ev(2, E.ACTIVITY_TASK_COMPLETED, scheduled_event_id=5, seq=1, result=None),
    ev(2, E.ACTIVITY_TASK_CANCELED, scheduled_event_id=5, seq=1, details=None),
    ev(2, E.TIMER_FIRED, started_event_id=5, seq=1),
    ev(2, E.TIMER_CANCELED, started_event_id=5, seq=1),
])
def test_apply_refuses_an_answer_to_nothing(event: Event) -> None:
    with pytest.raises(FoldError):
        apply(apply(ExecutionState(), STARTED), event)


def test_apply_refuses_a_cancel_request_for_no_activity() -> None:
    with pytest.raises(FoldError):
        apply(apply(ExecutionState(), STARTED),
              ev(2, E.ACTIVITY_TASK_CANCEL_REQUESTED, scheduled_event_id=5, seq=1))


def test_workflow_task_started_twice_is_refused() -> None:
    s = fold([STARTED, ev(2, E.WORKFLOW_TASK_SCHEDULED, task_queue="q", attempt=1),
              ev(3, E.WORKFLOW_TASK_STARTED, scheduled_event_id=2, attempt=1, worker="w")])
    with pytest.raises(FoldError):
        apply(s, ev(4, E.WORKFLOW_TASK_STARTED, scheduled_event_id=2, attempt=1, worker="w"))
