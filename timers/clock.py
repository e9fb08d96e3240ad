"""The engine's clock, and the skewed one a time-skipping test engine puts in its place.

``now()`` is ``django.utils.timezone.now()``, looked up at each call. In a normal engine
that is all there is. The test engine (``dispatch.testengine``, for ``sdk.testing``) calls
``install()`` before Django loads any app: from then on ``timezone.now`` is a
``SkewedClock``, wall time plus an offset that ``timers.skipping`` grows to skip time, so
every reading of the time in that process (event timestamps, timer due times, leases, the
timer manager's sleeps) agrees on one clock. Why the whole process and not the timer manager
alone: ``timers.skipping``'s docstring.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime, timedelta

from django.utils import timezone

__all__ = ["SkewedClock", "install", "installed", "now"]


def now() -> datetime:
    """The engine's time (the skewed clock in a time-skipping test engine)."""
    return timezone.now()


class SkewedClock:
    """Wall time plus an offset that ``advance`` grows (never shrinks: time goes forward)."""

    def __init__(self, wall: Callable[[], datetime]) -> None:
        self._wall = wall
        self._offset = timedelta(0)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        return self._wall() + self._offset

    @property
    def offset(self) -> timedelta:
        return self._offset

    def advance(self, by: timedelta) -> None:
        if by > timedelta(0):
            with self._lock:
                self._offset += by


_installed: SkewedClock | None = None


def install() -> SkewedClock:
    """Make ``timezone.now`` this process's skewed clock (once). Only the test engine calls
    this, before ``django.setup()``."""
    global _installed
    if _installed is None:
        _installed = SkewedClock(timezone.now)
        timezone.now = _installed.now
    return _installed


def installed() -> SkewedClock | None:
    return _installed
