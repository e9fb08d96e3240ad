"""Engine process rows: who is alive, and which engines died with their sessions.

An engine registers its row when it starts and beats it while it lives
(``dispatch.lifecycle``). The dispatcher's leader takes the rows of dead engines
(``take_dead``, under its term), which releases the worker sessions they served. Taking a
row locks it and re-reads its beat, so a live engine whose beat commits first is not taken;
an engine whose row was taken finds it gone at its next beat (``beat`` returns False).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

from django.db.models import Q

from dispatch.models import EngineProcess

__all__ = ["EngineProcess", "beat", "register", "started_at", "take_dead"]


def register(engine_id: str, *, host: str, pid: int, now: datetime) -> None:
    EngineProcess.objects.update_or_create(
        engine_id=engine_id,
        defaults={"host": host[:255], "pid": pid, "started_at": now, "heartbeat_at": now})


def beat(engine_id: str, now: datetime) -> bool:
    """This engine is alive; False if its row is gone (another engine declared it dead)."""
    return bool(EngineProcess.objects.filter(engine_id=engine_id).update(heartbeat_at=now))


def started_at(engine_id: str) -> datetime | None:
    return (EngineProcess.objects.filter(engine_id=engine_id)
            .values_list("started_at", flat=True).first())


def take_dead(now: datetime, *, me: str, host: str, timeout: float, grace: float,
              pid_alive: Callable[[int], bool]) -> list[str]:
    """Delete the rows of dead engines and return their ids. Dead: silent for ``timeout``
    seconds, or on this ``host`` with its process gone (or its pid now another process's:
    ``pid_alive`` says False) and silent for ``grace`` seconds. Call in a transaction."""
    candidates = (EngineProcess.objects.select_for_update(skip_locked=True)
                  .exclude(engine_id=me)
                  .filter(Q(heartbeat_at__lt=now - timedelta(seconds=timeout))
                          | Q(host=host, heartbeat_at__lt=now - timedelta(seconds=grace))))
    dead = [row.engine_id for row in candidates
            if row.heartbeat_at < now - timedelta(seconds=timeout) or not pid_alive(row.pid)]
    if dead:
        EngineProcess.objects.filter(engine_id__in=dead).delete()
    return dead
