"""Waking long-polls in this process when a run changes.

A request that long-polls (a run's result, new history events) waits here instead of
sleeping: every transaction that writes a run's events calls ``on_commit_changed``, and once
it commits every waiter in this process re-checks. Changes committed by another engine
process are seen at the next poll (``POLL_SECONDS``), so the wait is never longer than that
behind the truth.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import TypeVar

from django.db import transaction

T = TypeVar("T")
POLL_SECONDS = 0.25

_changed = threading.Condition()
_generation = 0


def _notify() -> None:
    global _generation
    with _changed:
        _generation += 1
        _changed.notify_all()


def on_commit_changed() -> None:
    transaction.on_commit(_notify)


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
