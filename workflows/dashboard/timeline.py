"""The timeline of one run: activities, timers, children and updates (from accepted to
completed) as bars over time, signals and failures as marks. Pure: computed from the
history events and the pending work, no database.

Retries of an activity write no events (the engine records only the last attempt's
``ActivityTaskStarted`` and the outcome, which carry ``attempt``), so a closed activity shows
how many attempts it took, and a pending one shows its task's attempt and last failure.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol

from workflows.core.events import EventType

E = EventType

# Keyed by the enum, looked up by the event's type as stored (a str equal to its value).
ACTIVITY_CLOSE: dict[str, str] = {
    E.ACTIVITY_TASK_COMPLETED: "completed",
    E.ACTIVITY_TASK_FAILED: "failed",
    E.ACTIVITY_TASK_TIMED_OUT: "timed_out",
    E.ACTIVITY_TASK_CANCELED: "canceled",
}
TIMER_CLOSE: dict[str, str] = {E.TIMER_FIRED: "fired", E.TIMER_CANCELED: "canceled"}
# A child workflow's bar runs from its start command to its end (keyed by initiated event).
CHILD_CLOSE: dict[str, str] = {
    E.START_CHILD_WORKFLOW_EXECUTION_FAILED: "start_failed",
    E.CHILD_WORKFLOW_EXECUTION_COMPLETED: "completed",
    E.CHILD_WORKFLOW_EXECUTION_FAILED: "failed",
    E.CHILD_WORKFLOW_EXECUTION_CANCELED: "canceled",
    E.CHILD_WORKFLOW_EXECUTION_TERMINATED: "terminated",
    E.CHILD_WORKFLOW_EXECUTION_TIMED_OUT: "timed_out",
}
MARKS: dict[str, str] = {
    E.WORKFLOW_EXECUTION_SIGNALED: "signal",
    E.WORKFLOW_TASK_FAILED: "failure",
    E.WORKFLOW_TASK_TIMED_OUT: "failure",
    E.WORKFLOW_EXECUTION_CANCEL_REQUESTED: "cancel",
}
MIN_WIDTH_PCT = 0.6


class EventLike(Protocol):
    event_id: int
    event_type: str
    timestamp: datetime
    attributes: dict[str, Any]


@dataclass
class Bar:
    kind: str                 # "activity", "timer", "child" or "update"
    label: str
    start: datetime
    end: datetime | None      # None while open
    outcome: str              # completed, failed, timed_out, canceled, fired, scheduled, ...
    attempt: int = 1
    started: datetime | None = None   # when the last attempt started (activities)
    last_failure: str = ""
    left: float = 0.0
    width: float = 0.0
    run_left: float | None = None     # the last attempt's running part, within the bar
    details: list[str] = field(default_factory=list)

    @property
    def is_open(self) -> bool:
        return self.end is None

    @property
    def retried(self) -> bool:
        return self.attempt > 1

    @property
    def failed(self) -> bool:
        return (self.outcome in ("failed", "timed_out", "terminated", "start_failed")
                or bool(self.last_failure))

    @property
    def title(self) -> str:
        return " · ".join([self.label, self.outcome, *self.details])


@dataclass
class Mark:
    kind: str
    label: str
    at: datetime
    left: float = 0.0


@dataclass
class Timeline:
    start: datetime
    end: datetime
    bars: list[Bar]
    marks: list[Mark]

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


def _failure_text(failure: Any) -> str:
    if isinstance(failure, Mapping):
        kind, message = failure.get("type"), failure.get("message")
        return ": ".join(str(p) for p in (kind, message) if p) or "failure"
    return "" if failure is None else str(failure)


def build(events: Iterable[EventLike], *, pending_activities: Sequence[Mapping[str, Any]] = (),
          now: datetime, closed_at: datetime | None = None) -> Timeline:
    """The timeline of a run from its events; ``pending_activities`` as described by
    ``selectors.execution_describe`` (attempt, state, last_failure of each open activity)."""
    activities: dict[int, Bar] = {}
    timers: dict[int, Bar] = {}
    children: dict[int, Bar] = {}
    updates: dict[str, Bar] = {}
    marks: list[Mark] = []
    bars: list[Bar] = []
    first: datetime | None = None
    last: datetime | None = None
    for e in events:
        first = e.timestamp if first is None else first
        last = e.timestamp
        a = e.attributes or {}
        if e.event_type == E.ACTIVITY_TASK_SCHEDULED:
            bar = Bar("activity", f"{a.get('activity_type', '?')} #{a.get('seq', '?')}",
                      e.timestamp, None, "scheduled")
            activities[e.event_id] = bar
            bars.append(bar)
        elif e.event_type == E.ACTIVITY_TASK_STARTED:
            if (hit := activities.get(a.get("scheduled_event_id", -1))) is not None:
                hit.started = e.timestamp
                hit.attempt = int(a.get("attempt") or hit.attempt)
                hit.outcome = "started"
        elif e.event_type in ACTIVITY_CLOSE:
            if (hit := activities.get(a.get("scheduled_event_id", -1))) is not None:
                hit.end = e.timestamp
                hit.outcome = ACTIVITY_CLOSE[e.event_type]
                hit.attempt = int(a.get("attempt") or hit.attempt)
                if "failure" in a:
                    hit.last_failure = _failure_text(a["failure"])
        elif e.event_type == E.TIMER_STARTED:
            label = f"timer #{a.get('seq', '?')}"
            if isinstance(a.get("duration_ms"), int | float):
                label += f" ({_seconds(a['duration_ms'] / 1000)})"
            bar = Bar("timer", label, e.timestamp, None, "pending")
            if isinstance(a.get("fire_at"), str):
                bar.details.append(f"fires at {a['fire_at']}")
            timers[e.event_id] = bar
            bars.append(bar)
        elif e.event_type in TIMER_CLOSE:
            if (hit := timers.get(a.get("started_event_id", -1))) is not None:
                hit.end = e.timestamp
                hit.outcome = TIMER_CLOSE[e.event_type]
        elif e.event_type == E.START_CHILD_WORKFLOW_EXECUTION_INITIATED:
            bar = Bar("child", f"child {a.get('workflow_type', '?')}", e.timestamp, None,
                      "starting", details=[f"workflow id {a.get('workflow_id', '?')}"])
            children[e.event_id] = bar
            bars.append(bar)
        elif e.event_type == E.CHILD_WORKFLOW_EXECUTION_STARTED:
            if (hit := children.get(a.get("initiated_event_id", -1))) is not None:
                hit.started, hit.outcome = e.timestamp, "running"
        elif e.event_type in CHILD_CLOSE:
            if (hit := children.get(a.get("initiated_event_id", -1))) is not None:
                hit.end = e.timestamp
                hit.outcome = CHILD_CLOSE[e.event_type]
                if "failure" in a:
                    hit.last_failure = _failure_text(a["failure"])
        elif e.event_type == E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            bar = Bar("update", f"update {a.get('update_name', '?')}", e.timestamp, None,
                      "accepted", details=[f"update id {a.get('update_id', '?')}"])
            updates[str(a.get("update_id"))] = bar
            bars.append(bar)
        elif e.event_type == E.WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            if (hit := updates.get(str(a.get("update_id")))) is not None:
                hit.end = e.timestamp
                hit.outcome = "failed" if a.get("failure") else "completed"
                if a.get("failure"):
                    hit.last_failure = _failure_text(a["failure"])
        elif e.event_type in MARKS:
            label = e.event_type
            if e.event_type == E.WORKFLOW_EXECUTION_SIGNALED:
                label = f"signal {a.get('signal_name', '')}"
            elif "failure" in a:
                label += f": {_failure_text(a['failure'])}"
            marks.append(Mark(MARKS[e.event_type], label, e.timestamp))
    for info in pending_activities:
        pending = activities.get(info.get("scheduled_event_id", -1))
        if pending is None or pending.end is not None:
            continue
        pending.outcome = str(info.get("state") or pending.outcome)
        pending.attempt = int(info.get("attempt") or pending.attempt)
        pending.last_failure = _failure_text(info.get("last_failure"))
    start = first or now
    end = closed_at or max(now, last or now)
    _place(bars, marks, start, end)
    return Timeline(start, end, bars, marks)


def _seconds(s: float) -> str:
    if s < 1:
        return f"{s * 1000:.0f} ms"
    if s < 120:
        return f"{s:.3g} s"
    if s < 7200:
        return f"{s / 60:.3g} min"
    return f"{s / 3600:.3g} h"


def _place(bars: list[Bar], marks: list[Mark], start: datetime, end: datetime) -> None:
    span = max((end - start).total_seconds(), 1e-3)

    def pct(at: datetime) -> float:
        return min(100.0, max(0.0, (at - start).total_seconds() / span * 100))

    for bar in bars:
        bar_end = bar.end or end
        bar.left = pct(bar.start)
        bar.width = max(MIN_WIDTH_PCT, pct(bar_end) - bar.left)
        bar.left = min(bar.left, 100 - bar.width)
        if bar.started is not None and bar.width > 0:
            bar.run_left = min(100.0, max(0.0, (pct(bar.started) - bar.left) / bar.width * 100))
        took = (bar_end - bar.start).total_seconds()
        bar.details.append(_seconds(took) + ("" if bar.end else " so far"))
        if bar.kind == "activity" and bar.attempt > 1:
            bar.details.append(f"attempt {bar.attempt}")
        if bar.last_failure:
            bar.details.append(f"last failure: {bar.last_failure}")
    for mark in marks:
        mark.left = pct(mark.at)


def describe_seconds(s: float) -> str:
    return _seconds(s)
