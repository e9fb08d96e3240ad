"""Reads of executions and their history, for the API, the admin and the dashboard.

Writes live in ``workflows.services``; nothing here writes. The long-poll reads (``wait``)
poll the database: a sync view under ASGI runs in its own thread, so a waiting request costs
a thread, and between polls it gives its database connection back (to psycopg's pool) so that
waiting requests do not hold the pool's few connections.
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Q, QuerySet

from dispatch.models import Task, TaskKind, TaskState
from workflows.core.state import Status
from workflows.errors import InvalidInput
from workflows.models import Execution, HistoryEvent
from workflows.services import get_run

POLL_INTERVAL_SECONDS = 0.05
T = TypeVar("T")

# Task.state -> the state a user sees for a pending activity (Temporal's words).
ACTIVITY_STATES = {TaskState.READY: "scheduled", TaskState.LEASED: "started",
                   TaskState.BACKOFF: "backoff"}


def poll(read: Callable[[], T], done: Callable[[T], bool], *, wait: float,
         interval: float = POLL_INTERVAL_SECONDS) -> T:
    """``read()`` until ``done`` or ``wait`` seconds have passed; the last value read."""
    deadline = time.monotonic() + wait
    while True:
        value = read()
        remaining = deadline - time.monotonic()
        if done(value) or remaining <= 0:
            return value
        if not connection.in_atomic_block:
            connection.close()  # back to the pool while we sleep
        time.sleep(min(interval, remaining))


# ---- listing -------------------------------------------------------------------------------


def _encode_cursor(execution: Execution) -> str:
    raw = json.dumps([execution.created_at.isoformat(), execution.pk]).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, int]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        created, pk = json.loads(raw)
        at = datetime.fromisoformat(created)
        if (at.tzinfo is None or isinstance(pk, bool) or not isinstance(pk, int)
                or not 0 < pk < 2**63):
            raise ValueError
        return at, pk
    except (ValueError, TypeError, binascii.Error, UnicodeDecodeError):
        raise InvalidInput("invalid cursor", fields={"cursor": ["invalid cursor."]}) from None


def execution_list(*, filters: dict[str, str], cursor: str | None = None,
                   page_size: int = 100) -> tuple[list[Execution], str | None]:
    """Runs newest first, filtered by exact ``status``/``workflow_type``/``task_queue``/
    ``workflow_id``; keyset-paginated on ``(created_at, id)``. Returns the page and the
    cursor of the next one (None on the last page)."""
    runs: QuerySet[Execution] = Execution.objects.filter(**filters)
    if cursor:
        at, pk = _decode_cursor(cursor)
        runs = runs.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=pk))
    page = list(runs.order_by("-created_at", "-id")[: page_size + 1])
    more = len(page) > page_size
    page = page[:page_size]
    return page, _encode_cursor(page[-1]) if more and page else None


# ---- one run -------------------------------------------------------------------------------


def execution_get(*, workflow_id: str, run_id: str | None = None) -> Execution:
    """The run ``run_id`` of ``workflow_id``, or its latest run. ``NotFound`` if none."""
    return get_run(workflow_id, run_id)


@dataclass(frozen=True)
class Description:
    execution: Execution
    pending_activities: list[dict[str, Any]]
    pending_timers: list[dict[str, Any]]
    cancel_requested: bool


def execution_describe(*, workflow_id: str, run_id: str | None = None) -> Description:
    run = get_run(workflow_id, run_id)
    state = run.core_state() if run.state else None
    if state is None or not state.is_open:
        return Description(run, [], [], bool(state and state.cancel_requested))
    tasks = {t.scheduled_event_id: t for t in
             Task.objects.filter(execution=run, kind=TaskKind.ACTIVITY)}
    activities = []
    for a in sorted(state.activities.values(), key=lambda a: a.seq):
        task = tasks.get(a.scheduled_event_id)
        task_state = ACTIVITY_STATES.get(TaskState(task.state), task.state) if task else "scheduled"
        activities.append({
            "seq": a.seq, "activity_type": a.activity_type,
            "scheduled_event_id": a.scheduled_event_id,
            "state": ("cancel_requested" if a.cancel_requested or (task and task.cancel_requested)
                      else task_state),
            "attempt": task.attempt if task else 1,
            "last_failure": task.last_failure if task else None,
            "heartbeat_details": task.heartbeat_details if task else None,
            "last_heartbeat_at": task.last_heartbeat_at if task else None,
        })
    timers = [{"seq": t.seq, "fire_at": t.fire_at}
              for t in sorted(state.timers.values(), key=lambda t: t.seq)]
    return Description(run, activities, timers, state.cancel_requested)


# ---- history -------------------------------------------------------------------------------


@dataclass(frozen=True)
class HistoryPage:
    execution: Execution
    events: list[HistoryEvent]
    next_after: int | None


def _history_page(run: Execution, *, after: int, limit: int) -> HistoryPage:
    rows = list(HistoryEvent.objects.filter(execution=run, event_id__gt=after)
                .order_by("event_id")[: limit + 1])
    more = len(rows) > limit
    rows = rows[:limit]
    return HistoryPage(run, rows, rows[-1].event_id if more else None)


def history_page(*, workflow_id: str, run_id: str | None = None, after: int = 0,
                 limit: int = 1000, wait: float = 0) -> HistoryPage:
    """Events of one run with ``event_id > after``, at most ``limit``. With ``wait``, waits up
    to that many seconds for such events while the run is open."""
    run = get_run(workflow_id, run_id)

    def read() -> HistoryPage:
        run.refresh_from_db(fields=["status", "next_event_id"])
        return _history_page(run, after=after, limit=limit)

    def done(page: HistoryPage) -> bool:
        return bool(page.events) or page.execution.status != Status.RUNNING.value

    return poll(read, done, wait=wait)


def execution_result(*, workflow_id: str, run_id: str | None = None,
                     wait: float = 0) -> Execution:
    """The run, once it has closed or after ``wait`` seconds, whichever comes first."""
    run = get_run(workflow_id, run_id)

    def read() -> Execution:
        run.refresh_from_db(fields=["status", "result", "failure", "closed_at"])
        return run

    return poll(read, lambda r: r.status != Status.RUNNING.value, wait=wait)
