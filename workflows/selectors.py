"""Reads of executions and their history, for the API, the admin and the dashboard.

Writes live in ``workflows.services``; nothing here writes. The long-poll reads (``wait``)
re-read their run when a commit of that run wakes them (``workflows.changes.watch``: a commit
in this process at once; another engine process's within ``POLL_INTERVAL_SECONDS``, seen by
the one poller of this process): a sync view under ASGI runs in its own thread, so a waiting request
costs a thread, and between reads it gives its database connection back (on PostgreSQL, to
psycopg's pool) so that waiting requests do not hold the pool's few connections. A result
waits for the commit that closes its run; a history page for any commit of its run.

Process state: the dashboard's status counts, when slow to count, are kept a few seconds per filter
(``_status_counts_cache``, owned here); everything else is read from the database each time.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from django.db import connection
from django.db.models import Count, Q, QuerySet

from dispatch.models import Task, TaskKind, TaskState, WorkerSession
from workflows import changes
from workflows.core import visibility
from workflows.core.events import EventType
from workflows.core.state import Status
from workflows.errors import InvalidInput
from workflows.models import Execution, HistoryEvent
from workflows.services import get_run
from workflows.store import update_events

# A commit of the run in this engine process wakes a waiting read at once
# (``workflows.changes``); this is how soon one sees a change another engine process committed.
POLL_INTERVAL_SECONDS = changes.REMOTE_POLL_SECONDS
T = TypeVar("T")

# Task.state -> the state a user sees for a pending activity (Temporal's words).
ACTIVITY_STATES = {TaskState.READY: "scheduled", TaskState.LEASED: "started",
                   TaskState.BACKOFF: "backoff"}


def poll(execution_id: int, read: Callable[[], T], done: Callable[[T], bool], *, wait: float,
         closing_only: bool = False) -> T:
    """``read()`` until ``done`` or ``wait`` seconds have passed; the last value read. Between
    reads, waits for a commit of run ``execution_id`` (``closing_only``: the commit that
    closes it), in this process or, seen by ``workflows.changes``' poller, in another: no
    read while the run does not change."""
    if wait <= 0:
        return read()
    deadline = time.monotonic() + wait
    with changes.watch(execution_id, closing_only=closing_only) as watch:
        while True:
            watch.clear()  # before the read: a commit after it wakes the wait below
            value = read()
            remaining = deadline - time.monotonic()
            if done(value) or remaining <= 0:
                return value
            if not connection.in_atomic_block and connection.vendor != "sqlite":
                connection.close()  # back to the pool while we wait (SQLite has none)
            watch.wait(remaining)


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
                   page_size: int = 100,
                   query: visibility.Expr | None = None) -> tuple[list[Execution], str | None]:
    """Runs newest first, filtered by exact ``status``/``workflow_type``/``task_queue``/
    ``workflow_id`` and by ``query`` (``workflows.core.visibility``); keyset-paginated on
    ``(created_at, id)``. Returns the page and the cursor of the next one (None on the last
    page)."""
    runs: QuerySet[Execution] = Execution.objects.filter(**filters)
    if query is not None:
        runs = runs.filter(visibility_q(query))
    if cursor:
        at, pk = _decode_cursor(cursor)
        # The redundant bound lets the planner range-scan the index instead of filtering it.
        runs = runs.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=pk),
                           created_at__lte=at)
    page = list(runs.order_by("-created_at", "-id")[: page_size + 1])
    more = len(page) > page_size
    page = page[:page_size]
    return page, _encode_cursor(page[-1]) if more and page else None


_LOOKUPS = {"=": "exact", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte"}


def visibility_q(expr: visibility.Expr) -> Q:
    """The filter ``expr`` says, over the executions table."""
    match expr:
        case visibility.And(terms):
            out = Q()
            for term in terms:
                out &= visibility_q(term)
            return out
        case visibility.Or(terms):
            out = Q()
            for term in terms:
                out |= visibility_q(term)
            return out
        case visibility.Compare(field, "!=", value):
            # A NULL field (CloseTime of an open run) is not "different from" a value.
            return ~Q(**{field: value}) & Q(**{f"{field}__isnull": False})
        case visibility.Compare(field, op, value):
            return Q(**{f"{field}__{_LOOKUPS[op]}": value})
        case visibility.In(field, values, negated):
            q = Q(**{f"{field}__in": values})
            return ~q & Q(**{f"{field}__isnull": False}) if negated else q
        case visibility.StartsWith(field, prefix):
            return Q(**{f"{field}__startswith": prefix})
        case visibility.IsNull(field, negated):
            return Q(**{f"{field}__isnull": not negated})
    raise TypeError(f"not a list filter: {expr!r}")


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


MAX_CHILDREN_SHOWN = 100


def execution_family(run: Execution) -> tuple[Execution | None, list[Execution]]:
    """The run that started ``run`` as its child (None for a run started from outside), and
    the children ``run`` started, oldest first (at most ``MAX_CHILDREN_SHOWN``)."""
    parent = (Execution.objects.filter(pk=run.parent_id).only(*FAMILY_FIELDS).first()
              if run.parent_id is not None else None)
    children = list(Execution.objects.filter(parent_id=run.pk).only(*FAMILY_FIELDS)
                    .order_by("created_at", "id")[:MAX_CHILDREN_SHOWN])
    return parent, children


FAMILY_FIELDS = ("workflow_id", "run_id", "workflow_type", "status", "created_at")


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
    if wait <= 0:  # the run as just read is fresh enough
        return _history_page(run, after=after, limit=limit)

    def read() -> HistoryPage:
        run.refresh_from_db(fields=["status", "next_event_id"])
        return _history_page(run, after=after, limit=limit)

    def done(page: HistoryPage) -> bool:
        return bool(page.events) or page.execution.status != Status.RUNNING.value

    return poll(run.pk, read, done, wait=wait)


def execution_result(*, workflow_id: str, run_id: str | None = None,
                     wait: float = 0) -> Execution:
    """The run, once it has closed or after ``wait`` seconds, whichever comes first. A run
    that continued as new is followed to the run it continued as, to the chain's last run:
    the result of a workflow is its last run's."""
    run = follow_chain(get_run(workflow_id, run_id))
    deadline = time.monotonic() + wait
    while run.status == Status.RUNNING.value and (remaining := deadline - time.monotonic()) > 0:
        def read(waited: Execution = run) -> Execution:
            waited.refresh_from_db(fields=["status", "result", "failure", "closed_at"])
            return waited

        run = follow_chain(poll(run.pk, read, lambda r: r.status != Status.RUNNING.value,
                                wait=remaining, closing_only=True))
    return run


def update_outcome(*, execution_id: int, update_id: str,
                   wait: float = 0) -> tuple[dict[str, Any] | None, str]:
    """The attributes of the run's WorkflowExecutionUpdateCompleted for ``update_id`` (None
    if not recorded) and the run's status, once the update completed or the run closed, or
    after ``wait`` seconds."""
    def read() -> tuple[dict[str, Any] | None, str]:
        # The status first: a run read closed has all its events written, the update's too.
        status = (Execution.objects.filter(pk=execution_id)
                  .values_list("status", flat=True).first()) or Status.RUNNING.value
        completed = update_events(execution_id, update_id).get(
            EventType.WORKFLOW_EXECUTION_UPDATE_COMPLETED.value)
        return completed, status

    return poll(execution_id, read,
                lambda outcome: outcome[0] is not None or outcome[1] != Status.RUNNING.value,
                wait=wait)


MAX_CHAIN_HOPS = 10_000  # a bound on following one request's continue-as-new chain


def follow_chain(run: Execution) -> Execution:
    """``run``, or if it continued as new (or failed and was retried), the run its chain has
    reached."""
    for _ in range(MAX_CHAIN_HOPS):
        if run.status == Status.CONTINUED_AS_NEW.value:
            event_type, key = EventType.WORKFLOW_EXECUTION_CONTINUED_AS_NEW, "new_run_id"
        elif run.status == Status.FAILED.value:
            event_type, key = EventType.WORKFLOW_EXECUTION_FAILED, "new_execution_run_id"
        elif run.status == Status.TIMED_OUT.value:
            event_type, key = EventType.WORKFLOW_EXECUTION_TIMED_OUT, "new_execution_run_id"
        else:
            break
        new_run_id = (HistoryEvent.objects.filter(execution=run, event_type=event_type.value)
                      .values_list("attributes", flat=True).first() or {}).get(key)
        if not isinstance(new_run_id, str):
            break
        successor = Execution.objects.filter(workflow_id=run.workflow_id,
                                             run_id=new_run_id).first()
        if successor is None:
            break
        run = successor
    return run


# ---- dashboard -----------------------------------------------------------------------------
# The dashboard's list, chip counts, live-update fingerprint and workers page. The list is the
# same keyset walk as ``execution_list`` with a time range; it never counts the table.

STATUS_COUNTS_CACHE_SECONDS = 5.0
STATUS_COUNTS_SLOW_SECONDS = 0.05  # a count faster than this is not worth a stale answer
_status_counts_cache: dict[tuple[tuple[str, Any], ...], tuple[float, dict[str, int]]] = {}


def _dashboard_runs(*, status: str = "", workflow_type: str = "", task_queue: str = "",
                    workflow_id: str = "", since: datetime | None = None) -> QuerySet[Execution]:
    filters: dict[str, Any] = {name: value for name, value in (
        ("status", status), ("workflow_type", workflow_type), ("task_queue", task_queue),
        ("workflow_id", workflow_id)) if value}
    if since is not None:
        filters["created_at__gte"] = since
    return Execution.objects.filter(**filters)


def execution_page(*, status: str = "", workflow_type: str = "", task_queue: str = "",
                   workflow_id: str = "", since: datetime | None = None,
                   cursor: str | None = None,
                   page_size: int = 50) -> tuple[list[Execution], str | None]:
    """One page of runs, newest first, for the dashboard: exact filters (each served by an
    index on ``(field, -created_at, -id)``), ``created_at >= since``, and a keyset cursor on
    ``(created_at, id)``. The heavy columns (state, input, result) are not loaded."""
    runs = _dashboard_runs(status=status, workflow_type=workflow_type, task_queue=task_queue,
                           workflow_id=workflow_id, since=since)
    if cursor:
        at, pk = _decode_cursor(cursor)
        # ``created_at <= at`` is implied by the OR, but only a plain range lets PostgreSQL
        # start the index scan at the cursor (with the OR alone it filters from the top:
        # ~170 ms at row 900,000 of a million, against ~2 ms).
        runs = runs.filter(Q(created_at__lt=at) | Q(created_at=at, pk__lt=pk),
                           created_at__lte=at)
    runs = runs.only("id", "workflow_id", "run_id", "workflow_type", "task_queue", "status",
                     "created_at", "closed_at")
    page = list(runs.order_by("-created_at", "-id")[: page_size + 1])
    more = len(page) > page_size
    page = page[:page_size]
    return page, _encode_cursor(page[-1]) if more and page else None


def execution_status_counts(*, workflow_type: str = "", task_queue: str = "",
                            workflow_id: str = "", since: datetime | None = None) -> dict[str, int]:
    """Runs per status under the given filters: one ``GROUP BY status`` query. At a million
    runs it reads an index of that size (~0.1-0.5 s on PostgreSQL), so when it was slow its
    answer is kept for a few seconds per process; a fast one is always fresh."""
    key = (("workflow_type", workflow_type), ("task_queue", task_queue),
           ("workflow_id", workflow_id), ("since", since and since.replace(second=0,
                                                                             microsecond=0)))
    now = time.monotonic()
    cached = _status_counts_cache.get(key)
    if cached is not None and now - cached[0] < STATUS_COUNTS_CACHE_SECONDS:
        return dict(cached[1])
    runs = _dashboard_runs(workflow_type=workflow_type, task_queue=task_queue,
                           workflow_id=workflow_id, since=since)
    counts = {row["status"]: row["n"] for row in
              runs.order_by().values("status").annotate(n=Count("id"))}
    if time.monotonic() - now >= STATUS_COUNTS_SLOW_SECONDS:
        if len(_status_counts_cache) > 256:
            _status_counts_cache.clear()
        _status_counts_cache[key] = (now, counts)
    return dict(counts)


def execution_fingerprint(run: Execution) -> str:
    """Changes whenever what the run's page shows changes: new events, a new status, or a
    pending activity's attempt, state or heartbeat (which write no event)."""
    tasks = Task.objects.filter(execution=run).order_by("id").values_list(
        "id", "state", "attempt", "last_heartbeat_at")
    parts = [run.status, str(run.next_event_id)]
    parts += [f"{i}:{s}:{a}:{h.timestamp() if h else ''}" for i, s, a, h in tasks]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def history_events(run: Execution, *, limit: int) -> tuple[list[HistoryEvent], bool]:
    """The run's first ``limit`` events, and whether there are more."""
    page = _history_page(run, after=0, limit=limit)
    return page.events, page.next_after is not None


def history_all(run: Execution, *, page_size: int = 1000) -> list[HistoryEvent]:
    """Every event of the run, read a page at a time (the dashboard's history download)."""
    events: list[HistoryEvent] = []
    after = 0
    while True:
        page = _history_page(run, after=after, limit=page_size)
        events.extend(page.events)
        if page.next_after is None:
            return events
        after = page.next_after


@dataclass(frozen=True)
class WorkerRow:
    session: WorkerSession
    workflow_tasks_in_flight: int
    activity_tasks_in_flight: int


def worker_list() -> list[WorkerRow]:
    """Connected workers with the tasks each holds (leased tasks, grouped by lease owner)."""
    sessions = list(WorkerSession.objects.order_by("task_queue", "identity", "worker_id"))
    held: dict[tuple[str, str], int] = {
        (row["lease_owner"], row["kind"]): row["n"] for row in
        Task.objects.filter(state=TaskState.LEASED,
                            lease_owner__in=[s.worker_id for s in sessions])
        .order_by().values("lease_owner", "kind").annotate(n=Count("id"))}
    return [WorkerRow(s, held.get((s.worker_id, TaskKind.WORKFLOW), 0),
                      held.get((s.worker_id, TaskKind.ACTIVITY), 0)) for s in sessions]
