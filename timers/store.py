"""Timer rows, written here alone: every wake-up the engine owes a run, with its due time.

Transitions start and drop timers through ``insert``/``delete`` (hand-written statements,
``schedproject.sql``); the timer manager reads ``due``/``next_due`` and fires each one
under ``lock``. Inserting a timer wakes the timer manager once the transaction commits
(the new one may be due sooner than the one it sleeps for).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from dispatch import wakeup
from schedproject import sql
from timers.models import Timer
from workflows.core.effects import StartTimer, TimerKind

__all__ = ["Timer", "TimerKind", "build", "delete", "delete_one", "delete_run", "due",
           "execution_of", "insert", "lock", "next_due", "reschedule", "reschedule_attempt"]


def build(execution_id: int, timer: StartTimer, now: datetime) -> Timer:
    """The (unsaved) row of a timer a transition starts."""
    return Timer(execution_id=execution_id, kind=timer.kind, seq=timer.seq,
                 fire_at=timer.fire_at, payload=dict(timer.payload), created_at=now)


def insert(timers: Sequence[Timer]) -> None:
    """Insert timers in one statement and wake the timer manager on commit."""
    if timers:
        sql.insert(timers)
        wakeup.on_commit(wakeup.TIMERS)


def delete(execution_id: int, kinds: Sequence[TimerKind], seq: int | None) -> None:
    """The run's timers of these kinds for ``seq`` (a user timer's, an activity's)."""
    marks = ", ".join(["%s"] * len(kinds))
    sql.write(f"DELETE FROM {sql.table(Timer)} WHERE execution_id = %s "
                f"AND kind IN ({marks}) AND seq = %s",
                [execution_id, *(k.value for k in kinds), seq])


# What a parent owes its child, on the child's row: kept when that run closes, as the child
# may go on in the run it continued as (``workflows.services.children``).
CHILD_KINDS = (TimerKind.PARENT_CLOSE_POLICY.value, TimerKind.CHILD_SIGNAL.value,
               TimerKind.CHILD_CANCEL.value)


def delete_run(execution_id: int) -> None:
    """Every timer of a run (it has closed), but those it holds for its parent."""
    sql.write(f"DELETE FROM {sql.table(Timer)} WHERE execution_id = %s "
                "AND kind NOT IN (%s, %s, %s)", [execution_id, *CHILD_KINDS])


def delete_one(timer_id: int) -> None:
    sql.write(f"DELETE FROM {sql.table(Timer)} WHERE id = %s", [timer_id])


def due(now: datetime, limit: int) -> list[tuple[int, int, str, datetime]]:
    """(id, execution id, kind, fire_at) of up to ``limit`` timers due by ``now``, earliest
    first. The timer manager asks at every wake-up: written out."""
    return [(t.pk, t.execution_id, t.kind, t.fire_at) for t in sql.objects(
        Timer, f"SELECT {sql.columns(Timer)} FROM {sql.table(Timer)} WHERE fire_at <= %s "
        "ORDER BY fire_at, id LIMIT %s", [now, limit])]


def next_due() -> datetime | None:
    rows = sql.objects(Timer, f"SELECT {sql.columns(Timer)} FROM {sql.table(Timer)} "
                       "ORDER BY fire_at LIMIT %s", [1])
    return rows[0].fire_at if rows else None


def execution_of(timer_id: int) -> int | None:
    row = Timer.objects.filter(pk=timer_id).values("execution_id").first()
    return None if row is None else int(row["execution_id"])


def lock(timer_id: int) -> Timer | None:
    """The timer, locked; None if it is gone or another transaction is firing it."""
    rows = sql.objects(Timer, f"SELECT {sql.columns(Timer)} FROM {sql.table(Timer)} "
                       f"WHERE id = %s{sql.for_update()}"
                       f"{sql.skip_locked() if sql.for_update() else ''}", [timer_id])
    return rows[0] if rows else None


def reschedule(timer_id: int, fire_at: datetime) -> None:
    Timer.objects.filter(pk=timer_id).update(fire_at=fire_at)


def reschedule_attempt(execution_id: int, seq: int | None, fire_at: datetime | None) -> None:
    """Move the deadline of an activity's running attempt (a heartbeat pushed it out)."""
    Timer.objects.filter(execution_id=execution_id, kind=TimerKind.ACTIVITY_ATTEMPT,
                         seq=seq).update(fire_at=fire_at)
