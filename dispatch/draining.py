"""The engine's live worker sockets, so a graceful shutdown can drain and close them.

``dispatch.lifecycle.Engine`` calls ``start_draining()`` on SIGTERM: from then on no socket is
given new work (its free credit reads zero, so a completion hands back no next task), new
sockets are refused, and the engine waits while ``busy()`` for held tasks to complete before
``close_all()`` closes the rest (each disconnect hands the worker's leases back).

Process state, on the server's event loop: the live sockets (added and discarded by the
worker consumer as it connects and disconnects), the frames being handled, and ``active``
(whether the process is draining), which ``Engine`` alone switches on, once, and never off.
"""

from __future__ import annotations

import contextlib
import weakref
from collections.abc import Iterator
from typing import Any

CLOSE_GOING_AWAY = 4001  # 1001 (going away): daphne sends only 1000 and 3000-4999

_live: weakref.WeakSet[Any] = weakref.WeakSet()
_in_flight = 0
active = False


def add(consumer: Any) -> None:
    _live.add(consumer)


def discard(consumer: Any) -> None:
    _live.discard(consumer)


@contextlib.contextmanager
def frame(consumer: Any) -> Iterator[None]:
    """Count a frame being handled; while draining, keep the socket's credit at zero."""
    global _in_flight
    _in_flight += 1
    try:
        yield
    finally:
        _in_flight -= 1
        if active:
            _no_credit(consumer)


def _no_credit(consumer: Any) -> None:
    consumer.max_workflow = 0
    consumer.max_activity = 0


def start_draining() -> None:
    global active
    active = True
    for consumer in list(_live):
        _no_credit(consumer)


def busy() -> bool:
    """A frame is being handled, or a socket holds a lease."""
    return _in_flight > 0 or held_count() > 0


def held_count() -> int:
    return sum(len(getattr(c, "held", ())) for c in list(_live))


def live_count() -> int:
    return len(_live)


async def close_all() -> None:
    for consumer in list(_live):
        with contextlib.suppress(Exception):
            await consumer.close(code=CLOSE_GOING_AWAY)
