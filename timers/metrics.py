"""The timers' Prometheus metric: how late each timer fired, by kind.

``observe_timer_fired`` is called by the timer manager for every timer it fires; the
histogram is per process, so Prometheus sums it over the engines it scrapes. Label values are
the timer kinds (``TimerKind``), never ids.
"""

from __future__ import annotations

from datetime import datetime

from prometheus_client import Histogram

from workflows.metrics import LATENCY_BUCKETS

TIMER_LATENESS = Histogram(
    "sched_timer_lateness_seconds", "How long after its due time a timer fired.", ["kind"],
    buckets=LATENCY_BUCKETS)


def observe_timer_fired(kind: str, fire_at: datetime, fired_at: datetime) -> None:
    TIMER_LATENESS.labels(kind).observe(max(0.0, (fired_at - fire_at).total_seconds()))
