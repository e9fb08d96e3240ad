"""The execution state and its fold over history events.

``ExecutionState`` is what the engine needs to know about a run to decide the next
transition: status, the next event id, the workflow task in flight, pending activities and
timers. It is derived data: ``fold(events)`` rebuilds it from the history, and the snapshot
stored beside each execution must always equal that fold (a test checks it on random runs).

The state is immutable; ``apply`` returns a new one. It serializes to plain JSON
(``to_dict``/``from_dict``) so the engine keeps it in one column and never re-reads the
history to make a decision.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any

from .events import CHILD_CLOSED_EVENTS, CLOSING_EVENTS, INPUT_EVENTS, Event, EventType

E = EventType


class Status(StrEnum):
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELED = "canceled"
    TERMINATED = "terminated"
    TIMED_OUT = "timed_out"
    CONTINUED_AS_NEW = "continued_as_new"


CLOSED_STATUS: dict[EventType, Status] = {
    E.WORKFLOW_EXECUTION_COMPLETED: Status.COMPLETED,
    E.WORKFLOW_EXECUTION_FAILED: Status.FAILED,
    E.WORKFLOW_EXECUTION_CANCELED: Status.CANCELED,
    E.WORKFLOW_EXECUTION_TERMINATED: Status.TERMINATED,
    E.WORKFLOW_EXECUTION_TIMED_OUT: Status.TIMED_OUT,
    E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW: Status.CONTINUED_AS_NEW,
}


@dataclass(frozen=True, slots=True)
class WorkflowTask:
    scheduled_event_id: int
    attempt: int
    started_event_id: int | None = None


@dataclass(frozen=True, slots=True)
class PendingActivity:
    seq: int
    scheduled_event_id: int
    activity_type: str
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True)
class PendingTimer:
    seq: int
    started_event_id: int
    fire_at: str


@dataclass(frozen=True, slots=True)
class PendingChild:
    """A child workflow this run started and that has not ended (``run_id`` once its start
    is recorded)."""

    seq: int
    initiated_event_id: int
    workflow_id: str
    parent_close_policy: str
    run_id: str | None = None


@dataclass(frozen=True, slots=True)
class PendingExternal:
    """A signal this run sent to a child, not yet answered."""

    seq: int
    initiated_event_id: int
    workflow_id: str


@dataclass(frozen=True, slots=True)
class ExecutionState:
    status: Status = Status.RUNNING
    next_event_id: int = 1
    workflow_type: str = ""
    task_queue: str = ""
    workflow_task: WorkflowTask | None = None
    # Input events arrived while a workflow task was in flight: another task is due after it.
    workflow_task_needed: bool = False
    # The last workflow task failed; the next one is its retry (attempt counts up).
    workflow_task_attempt: int = 1
    cancel_requested: bool = False
    max_seq: int = 0
    activities: Mapping[int, PendingActivity] = field(default_factory=dict)
    timers: Mapping[int, PendingTimer] = field(default_factory=dict)
    children: Mapping[int, PendingChild] = field(default_factory=dict)
    external: Mapping[int, PendingExternal] = field(default_factory=dict)
    # Updates accepted and not yet completed: update id -> its UpdateAccepted event id.
    updates: Mapping[str, int] = field(default_factory=dict)

    @property
    def is_open(self) -> bool:
        return self.status is Status.RUNNING

    def to_dict(self) -> dict[str, Any]:
        wt = self.workflow_task
        return {
            "status": self.status.value,
            "next_event_id": self.next_event_id,
            "workflow_type": self.workflow_type,
            "task_queue": self.task_queue,
            "workflow_task": None if wt is None else {
                "scheduled_event_id": wt.scheduled_event_id,
                "attempt": wt.attempt,
                "started_event_id": wt.started_event_id,
            },
            "workflow_task_needed": self.workflow_task_needed,
            "workflow_task_attempt": self.workflow_task_attempt,
            "cancel_requested": self.cancel_requested,
            "max_seq": self.max_seq,
            "activities": [
                [a.seq, a.scheduled_event_id, a.activity_type, a.cancel_requested]
                for a in self.activities.values()
            ],
            "timers": [[t.seq, t.started_event_id, t.fire_at] for t in self.timers.values()],
            "children": [[c.seq, c.initiated_event_id, c.workflow_id, c.parent_close_policy,
                          c.run_id] for c in self.children.values()],
            "external": [[x.seq, x.initiated_event_id, x.workflow_id]
                         for x in self.external.values()],
            "updates": [[update_id, event_id] for update_id, event_id in self.updates.items()],
        }

    def child(self, workflow_id: str) -> PendingChild | None:
        """The started child ``workflow_id`` that has not ended (at most one is open)."""
        return next((c for c in self.children.values()
                     if c.workflow_id == workflow_id and c.run_id is not None), None)

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> ExecutionState:
        wt = raw.get("workflow_task")
        return cls(
            status=Status(raw["status"]),
            next_event_id=raw["next_event_id"],
            workflow_type=raw["workflow_type"],
            task_queue=raw["task_queue"],
            workflow_task=None if wt is None else WorkflowTask(
                wt["scheduled_event_id"], wt["attempt"], wt["started_event_id"]
            ),
            workflow_task_needed=raw["workflow_task_needed"],
            workflow_task_attempt=raw["workflow_task_attempt"],
            cancel_requested=raw["cancel_requested"],
            max_seq=raw["max_seq"],
            activities={a[0]: PendingActivity(a[0], a[1], a[2], a[3]) for a in raw["activities"]},
            timers={t[0]: PendingTimer(t[0], t[1], t[2]) for t in raw["timers"]},
            # Snapshots written before child workflows existed have neither key.
            children={c[0]: PendingChild(c[0], c[1], c[2], c[3], c[4])
                      for c in raw.get("children", ())},
            external={x[0]: PendingExternal(x[0], x[1], x[2]) for x in raw.get("external", ())},
            # Snapshots written before updates existed have no such key.
            updates={u[0]: u[1] for u in raw.get("updates", ())},
        )


class FoldError(ValueError):
    """An event that cannot follow the state it is applied to (a corrupt history)."""


def apply(state: ExecutionState, event: Event) -> ExecutionState:
    """The state after ``event``. Raises ``FoldError`` for an event that cannot follow."""
    if event.event_id != state.next_event_id:
        raise FoldError(f"event id {event.event_id}, expected {state.next_event_id}")
    if not state.is_open and state.next_event_id > 1:
        raise FoldError(f"{event.event_type} after the run closed")
    if state.next_event_id == 1 and event.event_type is not E.WORKFLOW_EXECUTION_STARTED:
        raise FoldError("a history starts with WorkflowExecutionStarted")
    s = replace(state, next_event_id=state.next_event_id + 1)
    a = event.attributes
    t = event.event_type

    if t in INPUT_EVENTS and s.workflow_task is not None and s.workflow_task.started_event_id:
        s = replace(s, workflow_task_needed=True)

    if t is E.WORKFLOW_EXECUTION_STARTED:  # a retry's first task waits out its back-off
        return replace(s, workflow_type=a["workflow_type"], task_queue=a["task_queue"],
                       workflow_task_needed=bool(a.get("first_workflow_task_backoff_ms")))
    if t is E.WORKFLOW_TASK_SCHEDULED:
        return replace(
            s,
            workflow_task=WorkflowTask(event.event_id, a["attempt"]),
            workflow_task_needed=False,
        )
    if t is E.WORKFLOW_TASK_STARTED:
        wt = s.workflow_task
        if wt is None or wt.started_event_id is not None:
            raise FoldError("WorkflowTaskStarted without a scheduled workflow task")
        return replace(s, workflow_task=replace(wt, started_event_id=event.event_id))
    if t is E.WORKFLOW_TASK_COMPLETED:
        return replace(s, workflow_task=None, workflow_task_attempt=1)
    if t in (E.WORKFLOW_TASK_FAILED, E.WORKFLOW_TASK_TIMED_OUT):
        wt = s.workflow_task
        attempt = (wt.attempt if wt else s.workflow_task_attempt) + 1
        return replace(s, workflow_task=None, workflow_task_attempt=attempt,
                       workflow_task_needed=True)
    if t is E.ACTIVITY_TASK_SCHEDULED:
        seq = a["seq"]
        activities = dict(s.activities)
        activities[seq] = PendingActivity(seq, event.event_id, a["activity_type"])
        return replace(s, activities=activities, max_seq=max(s.max_seq, seq))
    if t is E.ACTIVITY_TASK_CANCEL_REQUESTED:
        activities = dict(s.activities)
        if a["seq"] not in activities:
            raise FoldError(f"{t} for activity seq {a['seq']} that is not pending")
        activities[a["seq"]] = replace(activities[a["seq"]], cancel_requested=True)
        return replace(s, activities=activities)
    if t in (E.ACTIVITY_TASK_COMPLETED, E.ACTIVITY_TASK_FAILED, E.ACTIVITY_TASK_TIMED_OUT,
             E.ACTIVITY_TASK_CANCELED):
        activities = dict(s.activities)
        if activities.pop(a["seq"], None) is None:
            raise FoldError(f"{t} for activity seq {a['seq']} that is not pending")
        return replace(s, activities=activities)
    if t is E.TIMER_STARTED:
        seq = a["seq"]
        timers = dict(s.timers)
        timers[seq] = PendingTimer(seq, event.event_id, a["fire_at"])
        return replace(s, timers=timers, max_seq=max(s.max_seq, seq))
    if t in (E.TIMER_FIRED, E.TIMER_CANCELED):
        timers = dict(s.timers)
        if timers.pop(a["seq"], None) is None:
            raise FoldError(f"{t} for timer seq {a['seq']} that is not pending")
        return replace(s, timers=timers)
    if t is E.MARKER_RECORDED:
        return replace(s, max_seq=max(s.max_seq, a["seq"]))
    if t in _CHILD_FOLDS:
        return _CHILD_FOLDS[t](s, event)
    if t is E.WORKFLOW_EXECUTION_CANCEL_REQUESTED:
        return replace(s, cancel_requested=True)
    if t is E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
        if a["update_id"] in s.updates:
            raise FoldError(f"{t} for update {a['update_id']!r} that is already pending")
        return replace(s, updates={**s.updates, a["update_id"]: event.event_id})
    if t is E.WORKFLOW_EXECUTION_UPDATE_COMPLETED:
        if a["update_id"] not in s.updates:
            raise FoldError(f"{t} for update {a['update_id']!r} that is not pending")
        return replace(s, updates={k: v for k, v in s.updates.items() if k != a["update_id"]})
    if t in CLOSING_EVENTS:
        return replace(
            s, status=CLOSED_STATUS[t], workflow_task=None, workflow_task_needed=False,
            activities={}, timers={}, children={}, external={}, updates={},
        )
    # Signals change nothing beyond the flag above.
    return s


# ---- child workflows: what the parent's state keeps of them -------------------------------


def _pending_child(s: ExecutionState, event: Event) -> PendingChild:
    child = s.children.get(event.attributes["seq"])
    if child is None:
        raise FoldError(f"{event.event_type} for child seq {event.attributes['seq']} "
                        "that is not pending")
    return child


def _child_initiated(s: ExecutionState, event: Event) -> ExecutionState:
    a = event.attributes
    children = {**s.children, a["seq"]: PendingChild(
        a["seq"], event.event_id, a["workflow_id"], a["parent_close_policy"])}
    return replace(s, children=children, max_seq=max(s.max_seq, a["seq"]))


def _child_started(s: ExecutionState, event: Event) -> ExecutionState:
    child = _pending_child(s, event)
    return replace(s, children={**s.children,
                                child.seq: replace(child, run_id=event.attributes["run_id"])})


def _child_ended(s: ExecutionState, event: Event) -> ExecutionState:
    child = _pending_child(s, event)
    return replace(s, children={k: v for k, v in s.children.items() if k != child.seq})


def _external_initiated(s: ExecutionState, event: Event) -> ExecutionState:
    a = event.attributes
    external = {**s.external, a["seq"]: PendingExternal(a["seq"], event.event_id,
                                                        a["workflow_id"])}
    return replace(s, external=external, max_seq=max(s.max_seq, a["seq"]))


def _external_answered(s: ExecutionState, event: Event) -> ExecutionState:
    seq = event.attributes["seq"]
    if seq not in s.external:
        raise FoldError(f"{event.event_type} for signal seq {seq} that is not pending")
    return replace(s, external={k: v for k, v in s.external.items() if k != seq})


def _seq_only(s: ExecutionState, event: Event) -> ExecutionState:
    return replace(s, max_seq=max(s.max_seq, event.attributes["seq"]))


_CHILD_FOLDS: dict[EventType, Callable[[ExecutionState, Event], ExecutionState]] = {
    E.START_CHILD_WORKFLOW_EXECUTION_INITIATED: _child_initiated,
    E.START_CHILD_WORKFLOW_EXECUTION_FAILED: _child_ended,
    E.CHILD_WORKFLOW_EXECUTION_STARTED: _child_started,
    **{t: _child_ended for t in CHILD_CLOSED_EVENTS},
    E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: _external_initiated,
    E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED: _external_answered,
    E.EXTERNAL_WORKFLOW_EXECUTION_SIGNALED: _external_answered,
    E.REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: _seq_only,
}


def fold(events: Iterable[Event], state: ExecutionState | None = None) -> ExecutionState:
    s = state or ExecutionState()
    for event in events:
        s = apply(s, event)
    return s
