"""The run timeline: bars and marks from history events (pure, no database)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from workflows.dashboard import timeline

T0 = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class Ev:
    event_id: int
    event_type: str
    timestamp: datetime
    attributes: dict[str, Any] = field(default_factory=dict)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


HISTORY = [
    Ev(1, "WorkflowExecutionStarted", at(0)),
    Ev(5, "ActivityTaskScheduled", at(1), {"seq": 1, "activity_type": "charge"}),
    Ev(6, "TimerStarted", at(1), {"seq": 2, "duration_ms": 4000}),
    Ev(7, "ActivityTaskStarted", at(3), {"scheduled_event_id": 5, "attempt": 3}),
    Ev(8, "ActivityTaskCompleted", at(5), {"scheduled_event_id": 5}),
    Ev(9, "TimerFired", at(5), {"started_event_id": 6}),
    Ev(10, "WorkflowExecutionSignaled", at(6), {"signal_name": "approve"}),
    Ev(11, "ActivityTaskScheduled", at(6), {"seq": 3, "activity_type": "ship"}),
    Ev(12, "ActivityTaskStarted", at(7), {"scheduled_event_id": 11, "attempt": 1}),
    Ev(13, "ActivityTaskFailed", at(8), {"scheduled_event_id": 11, "attempt": 1,
                                         "failure": {"type": "Boom", "message": "no truck"}}),
    Ev(14, "ActivityTaskScheduled", at(8), {"seq": 4, "activity_type": "notify"}),
    Ev(15, "WorkflowTaskFailed", at(9), {"failure": {"type": "KeyError", "message": "x"}}),
]


def test_bars_and_marks_over_the_run() -> None:
    tl = timeline.build(HISTORY, now=at(10), pending_activities=[
        {"scheduled_event_id": 14, "state": "backoff", "attempt": 2,
         "last_failure": {"type": "Timeout", "message": "slow"}}])
    assert tl.start == at(0) and tl.end == at(10)
    charge, timer, ship, notify = tl.bars
    assert (charge.kind, charge.outcome, charge.attempt, charge.retried) == \
        ("activity", "completed", 3, True)
    assert (charge.left, charge.width) == (10.0, 40.0)
    assert charge.run_left == 50.0  # the last attempt ran the second half of the bar
    assert "attempt 3" in charge.title
    assert (timer.kind, timer.outcome, timer.label) == ("timer", "fired", "timer #2 (4 s)")
    assert (ship.outcome, ship.failed, ship.last_failure) == ("failed", True, "Boom: no truck")
    assert notify.is_open and notify.outcome == "backoff" and notify.attempt == 2
    assert notify.failed and notify.last_failure == "Timeout: slow"
    assert notify.left + notify.width == 100.0
    assert [(m.kind, m.left) for m in tl.marks] == [("signal", 60.0), ("failure", 90.0)]
    assert "KeyError" in tl.marks[1].label


def test_closed_run_ends_at_close_and_tiny_bars_stay_visible() -> None:
    events = [Ev(1, "WorkflowExecutionStarted", at(0)),
              Ev(2, "ActivityTaskScheduled", at(100), {"seq": 1, "activity_type": "a"}),
              Ev(3, "ActivityTaskCompleted", at(100), {"scheduled_event_id": 2})]
    tl = timeline.build(events, now=at(1000), closed_at=at(100))
    (bar,) = tl.bars
    assert tl.end == at(100)
    assert bar.width >= timeline.MIN_WIDTH_PCT and bar.left + bar.width <= 100


def test_empty_history() -> None:
    tl = timeline.build([], now=at(0))
    assert tl.bars == [] and tl.marks == [] and tl.duration == timedelta(0)


def test_child_workflows_are_bars_from_their_start_to_their_end() -> None:
    events = [
        Ev(1, "WorkflowExecutionStarted", at(0)),
        Ev(5, "StartChildWorkflowExecutionInitiated", at(1),
           {"seq": 1, "workflow_type": "ship", "workflow_id": "ship-7"}),
        Ev(6, "ChildWorkflowExecutionStarted", at(1), {"initiated_event_id": 5}),
        Ev(7, "StartChildWorkflowExecutionInitiated", at(2),
           {"seq": 2, "workflow_type": "ship", "workflow_id": "ship-7"}),
        Ev(8, "StartChildWorkflowExecutionFailed", at(2), {"initiated_event_id": 7}),
        Ev(9, "StartChildWorkflowExecutionInitiated", at(2),
           {"seq": 3, "workflow_type": "audit", "workflow_id": "a"}),
        Ev(10, "ChildWorkflowExecutionFailed", at(4), {
            "initiated_event_id": 5, "failure": {"type": "NoTruck", "message": "none"}}),
    ]
    tl = timeline.build(events, now=at(10))
    bars = [(b.kind, b.label, b.outcome, b.is_open, b.failed) for b in tl.bars]
    assert bars == [("child", "child ship", "failed", False, True),
                    ("child", "child ship", "start_failed", False, True),
                    ("child", "child audit", "starting", True, False)]
    assert "workflow id ship-7" in tl.bars[0].title and "NoTruck" in tl.bars[0].last_failure


def test_updates_are_bars_from_their_acceptance_to_their_completion() -> None:
    events = [
        Ev(1, "WorkflowExecutionStarted", at(0)),
        Ev(5, "WorkflowExecutionUpdateAccepted", at(1),
           {"update_id": "u1", "update_name": "add", "args": [1]}),
        Ev(6, "WorkflowExecutionUpdateAccepted", at(2),
           {"update_id": "u2", "update_name": "checkout", "args": []}),
        Ev(7, "WorkflowExecutionUpdateAccepted", at(2),
           {"update_id": "u3", "update_name": "add", "args": [2]}),
        Ev(9, "WorkflowExecutionUpdateCompleted", at(3),
           {"update_id": "u1", "accepted_event_id": 5, "result": 1, "failure": None}),
        Ev(10, "WorkflowExecutionUpdateCompleted", at(4), {
            "update_id": "u2", "accepted_event_id": 6, "result": None,
            "failure": {"type": "EmptyCart", "message": "the cart is empty"}}),
    ]
    tl = timeline.build(events, now=at(10))
    bars = [(b.kind, b.label, b.outcome, b.is_open, b.failed) for b in tl.bars]
    assert bars == [("update", "update add", "completed", False, False),
                    ("update", "update checkout", "failed", False, True),
                    ("update", "update add", "accepted", True, False)]
    assert "update id u2" in tl.bars[1].title
    assert tl.bars[1].last_failure == "EmptyCart: the cart is empty"
