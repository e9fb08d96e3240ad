"""A bound on the long polls one engine process holds at once.

A ``result?wait=`` or ``history?wait=`` request holds a thread (and, between reads, nothing
of the database) for up to a minute; without a bound, enough of them starve every other
request of this process. ``slot`` admits at most ``SCHED_MAX_WAITERS`` at once and refuses
one more at once with 503 ``too_many_waiters`` and ``Retry-After``: the client retries, or
asks without ``wait``. Requests that do not wait are never counted.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from schedproject import config
from workflows.errors import SchedError

RETRY_AFTER_SECONDS = 1


class TooManyWaiters(SchedError):
    code = "too_many_waiters"
    http_status = 503


_lock = threading.Lock()
_waiting = 0


def waiting() -> int:
    """How many long polls this process holds now."""
    return _waiting


@contextmanager
def slot(wait: float) -> Iterator[None]:
    """Hold one of the process's waiter slots while a request waits ``wait`` seconds (none
    if it does not wait); ``TooManyWaiters`` if all are taken."""
    global _waiting
    if wait <= 0:
        yield
        return
    limit = config.get().max_waiters
    with _lock:
        if _waiting >= limit:
            raise TooManyWaiters(
                f"this engine already holds {limit} waiting requests (SCHED_MAX_WAITERS); "
                f"retry in {RETRY_AFTER_SECONDS} s, or ask without wait",
                limit=limit, retry_after=RETRY_AFTER_SECONDS)
        _waiting += 1
    try:
        yield
    finally:
        with _lock:
            _waiting -= 1
