"""Dispatch's Prometheus metrics: schedule-to-start latency, activity retries, the leader
gauge, the items the loops and sockets could not handle, and the ready tasks and connected
workers read from the database at scrape time.

``observe_leases`` is a ``workflows.changes`` lease observer and ``DatabaseCollector`` a
collector; ``schedproject.metrics.install`` subscribes and registers them. ``set_leader`` is
called by leader election. The counters and the histogram are per process, so Prometheus sums
them over the engines it scrapes; every engine reports the same database gauges, so aggregate
those with ``max``, not ``sum``.

Label values are bounded: task queues, kinds, activity types and loop names, never ids; task
queues and activity types are user-chosen, so each keeps its first values and counts the rest
as ``other`` (``workflows.metrics.BoundedLabel``), the database gauges included.
Nothing here may fail a transition: the observer is guarded by ``workflows.changes`` and the
collector swallows (and logs) its own errors.
"""

from __future__ import annotations

import logging
from collections import Counter as Counter_
from collections.abc import Iterator, Sequence

from django.db.models import Count
from prometheus_client import Counter, Gauge, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from workflows.changes import Lease
from workflows.metrics import ACTIVITY_TYPE, LATENCY_BUCKETS, TASK_QUEUE

from .models import Task, TaskKind, TaskState, WorkerSession

log = logging.getLogger("sched.metrics")

ACTIVITY_RETRIES = Counter(
    "sched_activity_retries", "Leases of activity attempts after the first.",
    ["task_queue", "activity_type"])
SCHEDULE_TO_START = Histogram(
    "sched_schedule_to_start_seconds", "From a task becoming ready to its lease.",
    ["kind", "task_queue"], buckets=LATENCY_BUCKETS)
LEADER = Gauge(
    "sched_leader", "1 while this engine process leads the loop, else 0.", ["loop"])
ITEM_ERRORS = Counter(
    "sched_item_errors", "Items (a task, a delivery, a timer, a worker's frame) a loop or a "
    "worker socket could not handle; each was logged once with its run's ids, and the loop "
    "went on with the others.", ["loop"])


def item_failed(loop: str) -> None:
    """Count one item ``loop`` (``dispatcher``, ``timers``, ``worker_socket``) could not
    handle; the caller logs it, with the run's ids."""
    ITEM_ERRORS.labels(loop).inc()


def observe_leases(leases: Sequence[Lease]) -> None:
    """Schedule-to-start latency and activity retries (a ``workflows.changes`` observer)."""
    for lease in leases:
        SCHEDULE_TO_START.labels(lease.kind, TASK_QUEUE(lease.task_queue)).observe(
            max(0.0, lease.waited_seconds))
        if lease.kind == TaskKind.ACTIVITY and lease.attempt > 1:
            ACTIVITY_RETRIES.labels(TASK_QUEUE(lease.task_queue),
                                    ACTIVITY_TYPE(lease.type_name)).inc()


def set_leader(loop: str, leading: bool) -> None:
    LEADER.labels(loop).set(1 if leading else 0)


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
        by_queue_kind: Counter_[tuple[str, str]] = Counter_()
        by_queue: Counter_[str] = Counter_()
        try:
            for row in (Task.objects.filter(state=TaskState.READY)
                        .values("task_queue", "kind").annotate(n=Count("id"))
                        .order_by("task_queue", "kind")):
                by_queue_kind[TASK_QUEUE(row["task_queue"]), row["kind"]] += row["n"]
            for session in (WorkerSession.objects.values("task_queue")
                            .annotate(n=Count("id")).order_by("task_queue")):
                by_queue[TASK_QUEUE(session["task_queue"])] += session["n"]
        except Exception as exc:  # no database (yet), or called from an event loop
            log.debug("database metrics unavailable: %r", exc)
            return
        for (queue, kind), n in by_queue_kind.items():
            ready.add_metric([queue, kind], n)
        for queue, n in by_queue.items():
            workers.add_metric([queue], n)
        yield ready
        yield workers
