"""What happened to runs, told after commit: long-poll wake-ups and observers.

Every transaction that writes a run's events calls ``on_commit(execution, events)``; every
lease of a task calls ``on_commit_lease(...)``. Once the transaction commits:

- requests long-polling in this process (a run's result, new history events) re-check
  (``generation`` / ``wait_for_change``); changes committed by another engine process are
  seen at their next poll;
- observers registered with ``subscribe`` / ``subscribe_leases`` (metrics, say) are called
  with what was committed. An observer's failure is logged and never reaches the caller.

Process state: the generation counter (moved by every commit here, read by the long polls)
and the observer lists, subscribed once at start (``schedproject.metrics.install``, from
``WorkflowsConfig.ready``) and only read afterwards.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.db import transaction

from workflows.core.events import Event

if TYPE_CHECKING:
    from workflows.models import Execution

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


def generation() -> int:
    """A counter that moves on every commit in this process that changed a run."""
    with _changed:
        return _generation


def wait_for_change(since: int, timeout: float) -> None:
    """Wait until a commit moves the counter past ``since``, or ``timeout`` seconds."""
    with _changed:
        if _generation == since:
            _changed.wait(timeout=timeout)
