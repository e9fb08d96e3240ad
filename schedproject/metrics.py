"""The engine's Prometheus metrics, beside django-prometheus' HTTP and model metrics.

Counters and histograms are fed after commit by the observers of ``workflows.changes``
(``observe_transition``, ``observe_leases``), by the timer manager (``observe_timer_fired``)
and by leader election (``set_leader``); they are per process, so Prometheus sums them over
the engines it scrapes. The gauges of ready tasks and connected workers are read from the
database at scrape time (``DatabaseCollector``); every engine reports the same values, so
aggregate them with ``max``, not ``sum``.

Label values are bounded: workflow and activity types, task queues, statuses and kinds, never
ids. Nothing here may fail a transition: the observers are guarded by ``workflows.changes``
and the collector swallows (and logs) its own errors.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workflows.core.events import Event, EventType

if TYPE_CHECKING:
    from workflows.changes import Lease
    from workflows.models import Execution

log = logging.getLogger("sched.metrics")
E = EventType

# Seconds: from a few milliseconds (a sticky workflow task) to minutes (a backlog).
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                   300.0)

CLOSED_STATUS = {
    E.WORKFLOW_EXECUTION_COMPLETED: "completed",
    E.WORKFLOW_EXECUTION_FAILED: "failed",
    E.WORKFLOW_EXECUTION_CANCELED: "canceled",
    E.WORKFLOW_EXECUTION_TERMINATED: "terminated",
    E.WORKFLOW_EXECUTION_TIMED_OUT: "timed_out",
    E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW: "continued_as_new",
}
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
ACTIVITY_RETRIES = Counter(
    "sched_activity_retries", "Leases of activity attempts after the first.",
    ["task_queue", "activity_type"])
SCHEDULE_TO_START = Histogram(
    "sched_schedule_to_start_seconds", "From a task becoming ready to its lease.",
    ["kind", "task_queue"], buckets=LATENCY_BUCKETS)
WORKFLOW_TASK_LATENCY = Histogram(
    "sched_workflow_task_seconds",
    "From a workflow task's WorkflowTaskStarted to its WorkflowTaskCompleted.",
    ["workflow_type"], buckets=LATENCY_BUCKETS)
TIMER_LATENESS = Histogram(
    "sched_timer_lateness_seconds", "How long after its due time a timer fired.", ["kind"],
    buckets=LATENCY_BUCKETS)
LEADER = Gauge(
    "sched_leader", "1 while this engine process leads the loop, else 0.", ["loop"])


# ---- after-commit observers ------------------------------------------------------------------


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
    from workflows.models import HistoryEvent

    return (HistoryEvent.objects.filter(execution_id=execution.pk, event_id=event_id)
            .values_list("timestamp", flat=True).first())


def observe_transition(execution: Execution, events: Sequence[Event]) -> None:
    """Count what one committed transition did (a ``workflows.changes`` observer)."""
    for event in events:
        kind = event.event_type
        if kind is E.WORKFLOW_EXECUTION_STARTED:
            WORKFLOWS_STARTED.labels(execution.workflow_type).inc()
        elif kind in CLOSED_STATUS:
            WORKFLOWS_CLOSED.labels(execution.workflow_type, CLOSED_STATUS[kind]).inc()
        elif kind in ACTIVITY_STATUS:
            ACTIVITIES_CLOSED.labels(ACTIVITY_STATUS[kind]).inc()
        elif kind is E.WORKFLOW_TASK_STARTED:
            _started.put((execution.pk, event.event_id), event.timestamp)
        elif kind is E.WORKFLOW_TASK_COMPLETED:
            started = _started_at(execution, int(event.attributes["started_event_id"]))
            if started is not None:
                WORKFLOW_TASK_LATENCY.labels(execution.workflow_type).observe(
                    max(0.0, (event.timestamp - started).total_seconds()))


def observe_leases(leases: Sequence[Lease]) -> None:
    """Schedule-to-start latency and activity retries (a ``workflows.changes`` observer)."""
    for lease in leases:
        SCHEDULE_TO_START.labels(lease.kind, lease.task_queue).observe(
            max(0.0, lease.waited_seconds))
        if lease.kind == "activity" and lease.attempt > 1:
            ACTIVITY_RETRIES.labels(lease.task_queue, lease.type_name).inc()


def observe_timer_fired(kind: str, fire_at: datetime, fired_at: datetime) -> None:
    TIMER_LATENESS.labels(kind).observe(max(0.0, (fired_at - fire_at).total_seconds()))


def set_leader(loop: str, leading: bool) -> None:
    LEADER.labels(loop).set(1 if leading else 0)


# ---- read at scrape time ---------------------------------------------------------------------


class DatabaseCollector(Collector):
    """Ready tasks per queue and connected workers, two grouped counts on indexed columns."""

    def describe(self) -> Iterator[Metric]:
        # Names only: the registry calls ``collect`` to learn them otherwise (a query at
        # import time, before any database is ready).
        yield GaugeMetricFamily("sched_tasks_ready", "", labels=["task_queue", "kind"])
        yield GaugeMetricFamily("sched_workers_connected", "", labels=["task_queue"])

    def collect(self) -> Iterator[Metric]:
        ready = GaugeMetricFamily("sched_tasks_ready", "Tasks waiting for a worker.",
                                  labels=["task_queue", "kind"])
        workers = GaugeMetricFamily("sched_workers_connected", "Connected worker sessions.",
                                    labels=["task_queue"])
        try:
            from django.db.models import Count

            from dispatch.models import Task, TaskState, WorkerSession

            for row in (Task.objects.filter(state=TaskState.READY)
                        .values("task_queue", "kind").annotate(n=Count("id"))
                        .order_by("task_queue", "kind")):
                ready.add_metric([row["task_queue"], row["kind"]], row["n"])
            for session in (WorkerSession.objects.values("task_queue")
                            .annotate(n=Count("id")).order_by("task_queue")):
                workers.add_metric([session["task_queue"]], session["n"])
        except Exception as exc:  # no database (yet), or called from an event loop
            log.debug("database metrics unavailable: %r", exc)
            return
        yield ready
        yield workers


_installed = False


def install(registry: CollectorRegistry = REGISTRY) -> None:
    """Subscribe the observers and register the collector (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    from workflows import changes

    changes.subscribe(observe_transition)
    changes.subscribe_leases(observe_leases)
    registry.register(DatabaseCollector())
