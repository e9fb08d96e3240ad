"""The workflows' Prometheus metrics: runs started and closed, activities closed, and the
latency of workflow tasks.

Fed after commit by ``observe_transition``, a ``workflows.changes`` observer that
``schedproject.metrics.install`` subscribes; per process, so Prometheus sums them over the
engines it scrapes. ``LATENCY_BUCKETS`` is shared by the latency histograms of every domain.

Process state: ``_started`` remembers when this process saw each workflow task start (a
bounded cache, owned here), so the completion's latency needs no query in the usual case.

Label values are bounded: workflow types and statuses, never ids. Types and queues are
chosen by users (any caller of the API may start a run of a type of its choosing), so each
takes at most ``SCHED_METRICS_LABEL_VALUES`` values as themselves, the first this process
sees (``BoundedLabel``), and counts the rest as ``other``: 3,000 types make 101 series, not
3,000. The observer must not fail a transition: ``workflows.changes`` guards it.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from datetime import datetime

from prometheus_client import Counter, Histogram

from schedproject import config

from .core.events import Event, EventType
from .core.state import CLOSED_STATUS
from .models import Execution, HistoryEvent

E = EventType

OTHER = "other"
"""The label value of every type or queue past a label's bound."""


class BoundedLabel:
    """One user-chosen label (workflow type, task queue, activity type): the first
    ``SCHED_METRICS_LABEL_VALUES`` distinct values this process sees are kept as they are,
    every later one is ``OTHER``. Per process, as the metrics are."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._kept: set[str] = set()
        self._lock = threading.Lock()

    def __call__(self, value: str) -> str:
        if value in self._kept:
            return value
        with self._lock:
            if value in self._kept or len(self._kept) < config.get().metrics_label_values:
                self._kept.add(value)
                return value
        return OTHER

    def clear(self) -> None:
        """Forget the kept values (tests)."""
        with self._lock:
            self._kept.clear()


WORKFLOW_TYPE = BoundedLabel("workflow_type")
TASK_QUEUE = BoundedLabel("task_queue")
ACTIVITY_TYPE = BoundedLabel("activity_type")

# Seconds: from a few milliseconds (a sticky workflow task) to minutes (a backlog).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   300.0)

# How an activity closed, by the event that closed it (failed/timed_out: its last attempt).
ACTIVITY_STATUS = {
    E.ACTIVITY_TASK_COMPLETED: "completed",
    E.ACTIVITY_TASK_FAILED: "failed",
    E.ACTIVITY_TASK_TIMED_OUT: "timed_out",
    E.ACTIVITY_TASK_CANCELED: "canceled",
}

WORKFLOWS_STARTED = Counter(
    "sched_workflows_started", "Workflow runs started.", ["workflow_type"])
WORKFLOWS_CLOSED = Counter(
    "sched_workflows_closed", "Workflow runs closed, by how they closed.",
    ["workflow_type", "status"])
ACTIVITIES_CLOSED = Counter(
    "sched_activities_closed",
    "Activities closed, by outcome (failed/timed_out: after their last attempt).", ["status"])
WORKFLOW_TASK_LATENCY = Histogram(
    "sched_workflow_task_seconds",
    "From a workflow task's WorkflowTaskStarted to its WorkflowTaskCompleted.",
    ["workflow_type"], buckets=LATENCY_BUCKETS)


class _StartedTimes:
    """When this process saw each workflow task start, keyed by run and event id.

    A workflow task usually starts and completes in one process (a sticky lease, or one
    engine); when it started elsewhere, its ``WorkflowTaskStarted`` is read from the history.
    """

    def __init__(self, size: int = 10_000) -> None:
        self._size = size
        self._times: OrderedDict[tuple[int, int], datetime] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, key: tuple[int, int], when: datetime) -> None:
        with self._lock:
            self._times[key] = when
            while len(self._times) > self._size:
                self._times.popitem(last=False)

    def pop(self, key: tuple[int, int]) -> datetime | None:
        with self._lock:
            return self._times.pop(key, None)


_started = _StartedTimes()


def _started_at(execution: Execution, event_id: int) -> datetime | None:
    when = _started.pop((execution.pk, event_id))
    if when is not None:
        return when
    return (HistoryEvent.objects.filter(execution_id=execution.pk, event_id=event_id)
            .values_list("timestamp", flat=True).first())


def observe_transition(execution: Execution, events: Sequence[Event]) -> None:
    """Count what one committed transition did (a ``workflows.changes`` observer)."""
    for event in events:
        kind = event.event_type
        if kind is E.WORKFLOW_EXECUTION_STARTED:
            WORKFLOWS_STARTED.labels(WORKFLOW_TYPE(execution.workflow_type)).inc()
        elif kind in CLOSED_STATUS:
            WORKFLOWS_CLOSED.labels(WORKFLOW_TYPE(execution.workflow_type),
                                    CLOSED_STATUS[kind].value).inc()
        elif kind in ACTIVITY_STATUS:
            ACTIVITIES_CLOSED.labels(ACTIVITY_STATUS[kind]).inc()
        elif kind is E.WORKFLOW_TASK_STARTED:
            _started.put((execution.pk, event.event_id), event.timestamp)
        elif kind is E.WORKFLOW_TASK_COMPLETED:
            started = _started_at(execution, int(event.attributes["started_event_id"]))
            if started is not None:
                WORKFLOW_TASK_LATENCY.labels(WORKFLOW_TYPE(execution.workflow_type)).observe(
                    max(0.0, (event.timestamp - started).total_seconds()))
