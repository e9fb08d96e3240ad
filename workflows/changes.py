"""What happened to runs, told after commit: long-poll wake-ups and observers.

Every transaction that writes a run's events calls ``on_commit(execution, events)``; every
lease of a task calls ``on_commit_lease(...)``. Once the transaction commits:

- requests long-polling in this process (a run's result, new history events) re-check
  (``wait_until``). Changes committed by another engine process are seen at the next poll
  (``POLL_SECONDS``), so a wait is never longer than that behind the truth;
- observers registered with ``subscribe`` / ``subscribe_leases`` (metrics, say) are called
  with what was committed. An observer's failure is logged and never reaches the caller.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, TypeVar

from django.db import transaction

from workflows.core.events import Event

if TYPE_CHECKING:
    from workflows.models import Execution

T = TypeVar("T")
POLL_SECONDS = 0.25
log = logging.getLogger("sched.changes")


@dataclass(frozen=True)
class Lease:
    kind: str            # "workflow" or "activity"
    task_queue: str
    type_name: str
    attempt: int
    waited_seconds: float  # from the task becoming ready to this lease


TransitionObserver = Callable[["Execution", Sequence[Event]], None]
LeaseObserver = Callable[[Sequence[Lease]], None]

_changed = threading.Condition()
_generation = 0
_transition_observers: list[TransitionObserver] = []
_lease_observers: list[LeaseObserver] = []


def subscribe(observer: TransitionObserver) -> None:
    _transition_observers.append(observer)


def subscribe_leases(observer: LeaseObserver) -> None:
    _lease_observers.append(observer)


def _notify() -> None:
    global _generation
    with _changed:
        _generation += 1
        _changed.notify_all()


def on_commit(execution: Execution, events: Sequence[Event]) -> None:
    def committed() -> None:
        _notify()
        for observer in _transition_observers:
            try:
                observer(execution, events)
            except Exception:
                log.exception("transition observer %r failed", observer)

    transaction.on_commit(committed)


def on_commit_lease(leases: Sequence[Lease]) -> None:
    if not _lease_observers or not leases:
        return

    def committed() -> None:
        for observer in _lease_observers:
            try:
                observer(leases)
            except Exception:
                log.exception("lease observer %r failed", observer)

    transaction.on_commit(committed)


def wait_until(check: Callable[[], T | None], *, timeout: float) -> T | None:
    """Call ``check`` until it returns something other than None or ``timeout`` passes."""
    deadline = time.monotonic() + max(0.0, timeout)
    while True:
        with _changed:
            seen = _generation
        value = check()
        remaining = deadline - time.monotonic()
        if value is not None or remaining <= 0:
            return value
        with _changed:
            if _generation == seen:
                _changed.wait(timeout=min(POLL_SECONDS, remaining))
