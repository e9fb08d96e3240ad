"""The engine's Prometheus metrics, wired in: each domain owns its metrics and observers.

- ``workflows.metrics``: runs started and closed, activities closed, workflow task latency
  (``observe_transition``, a transition observer of ``workflows.changes``);
- ``dispatch.metrics``: schedule-to-start latency and activity retries (``observe_leases``, a
  lease observer), the leader gauge (set by leader election), and the ready tasks and
  connected workers read from the database at scrape time (``DatabaseCollector``);
- ``timers.metrics``: timer lateness (called by the timer manager).

They sit beside django-prometheus' HTTP and model metrics on ``/metrics``. This module only
wires them: ``install()`` subscribes the observers and registers the collector.
"""

from __future__ import annotations

from prometheus_client import REGISTRY, CollectorRegistry

from dispatch.metrics import DatabaseCollector, observe_leases
from workflows import changes
from workflows.metrics import observe_transition

_installed = False


def install(registry: CollectorRegistry = REGISTRY) -> None:
    """Subscribe the observers and register the collector (once per process)."""
    global _installed
    if _installed:
        return
    _installed = True
    changes.subscribe(observe_transition)
    changes.subscribe_leases(observe_leases)
    registry.register(DatabaseCollector())
