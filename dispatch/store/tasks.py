"""Task rows and their leases: the task state machine, written here alone.

    (insert) -> ready -> leased -> (delete: completed, or the run closed)
                  ^        |
                  |        +-> ready    (released: worker gone, lease expired)
                  +--------+-> backoff  (attempt failed; a retry timer makes it ready)

A lease is a token, ``<execution id>.<random>``, new at every lease: a completion names it,
and ``lock_leased`` is the one check that it is still the task's live lease. The execution
id in front lets the caller lock the run first, as every transition does.

The statements of the hot path (insert, lease, lock, delete) are hand-written
(``schedproject.sql``); the rest use the ORM. A store call that makes a task ready wakes the
dispatcher once the transaction commits.
"""

from __future__ import annotations

import secrets
from collections import defaultdict
from collections.abc import Collection, Iterable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

from django.db.models import Case, DateTimeField, Q, Value, When

from dispatch import wakeup
from dispatch.models import Task
from schedproject import config, sql
from workflows import changes
from workflows.core.effects import CreateTask, TaskKind, TaskState
from workflows.models import Execution

__all__ = [
    "LEASE_FIELDS", "Task", "TaskKind", "TaskState", "adopt", "build", "busy", "delete",
    "delete_by_schedule", "delete_run", "execution_id_from_token", "execution_of", "expired",
    "extend_lease", "extend_leases", "held_counts", "insert", "lease", "leased_activity_tokens",
    "leased_by", "leased_workflow_task", "lock_activity", "lock_by_schedule",
    "lock_leased", "lock_leased_activities", "lock_leased_id", "lock_leased_run",
    "make_ready", "new_token", "ready", "request_cancel", "save_heartbeat",
    "save_lease", "save_leases", "unlease",
]

LEASE_FIELDS = ("state", "token", "lease_owner", "leased_at", "lease_expires_at")


def new_token(execution_id: int) -> str:
    """A lease token: the run's id (so a completion locks the run first) and 96 random bits."""
    return f"{execution_id}.{secrets.token_hex(12)}"


def execution_id_from_token(token: str) -> int | None:
    head, _, rest = token.partition(".")
    return int(head) if head.isdigit() and len(head) < 19 and rest else None


# ---- creating and dropping ------------------------------------------------------------------


def build(execution: Execution, task: CreateTask, now: datetime) -> Task:
    """The (unsaved) ready row of a task a transition creates."""
    return Task(execution=execution, kind=task.kind, task_queue=task.task_queue,
                type_name=task.type_name, scheduled_event_id=task.scheduled_event_id,
                attempt=task.attempt, seq=task.seq, input=task.input,
                options=dict(task.options), created_at=now)


def insert(tasks: Sequence[Task]) -> None:
    """Insert new rows in one statement; wake the dispatcher if one is ready."""
    sql.insert(tasks)
    for name in {_wake_name(task) for task in tasks if task.state == TaskState.READY}:
        wakeup.on_commit(name)


def delete(task: Task) -> None:
    sql.write(f"DELETE FROM {sql.table(Task)} WHERE id = %s", [task.pk])


def delete_by_schedule(execution_id: int, kind: TaskKind, scheduled_event_id: int) -> None:
    sql.write(f"DELETE FROM {sql.table(Task)} WHERE execution_id = %s "
                "AND kind = %s AND scheduled_event_id = %s",
                [execution_id, kind.value, scheduled_event_id])


def delete_run(execution_id: int) -> None:
    """Every task row of a run (it has closed)."""
    sql.write(f"DELETE FROM {sql.table(Task)} WHERE execution_id = %s", [execution_id])


# ---- leases ---------------------------------------------------------------------------------


def lease(task: Task, worker_id: str, now: datetime, seconds: float) -> None:
    """Lease ``task`` to ``worker_id`` in memory (``save_lease``/``save_leases``, or the insert
    of a new row, write it)."""
    task.state = TaskState.LEASED
    task.token = new_token(task.execution_id)
    task.lease_owner = worker_id
    task.leased_at = now
    task.lease_expires_at = now + timedelta(seconds=seconds)
    changes.on_commit_lease([changes.Lease(task.kind, task.task_queue, task.type_name,
                                           task.attempt,
                                           (now - task.created_at).total_seconds())])


def save_lease(task: Task) -> None:
    sql.update(task, LEASE_FIELDS)


def save_leases(tasks: Sequence[Task]) -> None:
    """Save the leases of ``tasks``: one prepared ``UPDATE`` each, sent together."""
    with sql.deferring():
        for task in tasks:
            sql.update(task, LEASE_FIELDS)


def lock_leased(token: str, *, kind: TaskKind, owner: str | None) -> Task | None:
    """The task of ``kind`` leased under ``token`` (to ``owner``, if given), locked; None if
    ``token`` is not such a live lease. The one lease check of completions and heartbeats.
    Lock the execution first."""
    rows = sql.objects(
        Task, f"SELECT {sql.columns(Task)} FROM {sql.table(Task)} "
        f"WHERE token = %s AND state = %s{sql.for_update()}", [token, TaskState.LEASED.value])
    task = rows[0] if rows else None
    if (task is None or task.token != token or task.state != TaskState.LEASED
            or task.kind != kind or (owner is not None and task.lease_owner != owner)):
        return None
    return task


def lock_leased_run(token: str, *, kind: TaskKind,
                    owner: str | None) -> tuple[Execution, Task] | None:
    """The run and its task of ``kind`` leased under ``token`` (to ``owner``, if given), both
    locked, in one statement (the run's row first, as every transition locks them); None if
    ``token`` is not such a live lease. What ``lock_leased`` checks, for a caller that has not
    locked the run yet."""
    execution_id = execution_id_from_token(token)
    if execution_id is None:
        return None
    rows = sql.fetch(
        f"SELECT {sql.qualified_columns(Execution, 'e')}, {sql.qualified_columns(Task, 't')} "
        f"FROM {sql.table(Execution)} e JOIN {sql.table(Task)} t ON t.execution_id = e.id "
        f"WHERE e.id = %s AND t.token = %s AND t.state = %s{sql.for_no_key_update()}",
        [execution_id, token, TaskState.LEASED.value])
    if not rows:
        return None
    split = sql.width(Execution)
    execution = sql.instance(Execution, rows[0][:split])
    task = sql.instance(Task, rows[0][split:])
    if (task.token != token or task.kind != kind
            or (owner is not None and task.lease_owner != owner)):
        return None
    task.execution = execution
    return execution, task


def unlease(task: Task, *, to: TaskState, attempt: int | None = None,
            last_failure: dict[str, Any] | None = None) -> None:
    """End the lease: the task is ``ready`` again (same attempt), or waits in ``backoff``
    with its next ``attempt`` and ``last_failure``."""
    fields = list(LEASE_FIELDS)
    task.state = to
    task.token = ""
    task.lease_owner = ""
    task.leased_at = None
    task.lease_expires_at = None
    if to == TaskState.BACKOFF:
        assert attempt is not None
        task.attempt = attempt
        task.last_failure = last_failure
        fields += ["attempt", "last_failure"]
    sql.update(task, fields)
    if to == TaskState.READY:
        wakeup.on_commit(_wake_name(task))


def make_ready(task: Task) -> None:
    """A task in backoff is ready for its next attempt."""
    task.state = TaskState.READY
    sql.update(task, ["state"])
    wakeup.on_commit(_wake_name(task))


def _wake_name(task: Task) -> str:
    """The loop a ready ``task`` wakes: its run's dispatch shard's."""
    return wakeup.dispatch_shard(task.execution_id, config.get().dispatch_shards)


def request_cancel(execution_id: int, scheduled_event_id: int) -> tuple[str, str] | None:
    """Mark the run's leased activity asked to cancel; its (worker, token), to tell it."""
    rows = sql.fetch(f"UPDATE {sql.table(Task)} SET cancel_requested = %s "
                     "WHERE execution_id = %s AND kind = %s AND scheduled_event_id = %s "
                     "AND state = %s RETURNING lease_owner, token",
                     [True, execution_id, TaskKind.ACTIVITY.value, scheduled_event_id,
                      TaskState.LEASED.value])
    return (str(rows[0][0]), str(rows[0][1])) if rows else None


def save_heartbeat(task: Task) -> None:
    sql.update(task, ["heartbeat_details", "last_heartbeat_at"])


def extend_leases(held: Mapping[str, tuple[datetime, Collection[str]]]) -> None:
    """Push out the expiry of activity leases whose worker is alive: for each worker id,
    until when, and the tokens of the leases that reached its socket (a lease whose task
    frame never arrived is not extended, so it runs out and the task goes back). An expiry
    is never brought forward. A lease whose row another transaction holds is skipped, not
    waited for (its completion is being written, or the next round extends it): this runs
    in one transaction for all of an engine's workers, and waiting on rows that a group of
    completions holds while they wait on rows it holds would be a deadlock."""
    owners = [w for w, (_, tokens) in held.items() if tokens]
    if not owners:
        return
    tokens = [t for w in owners for t in held[w][1]]
    until = Case(*(When(lease_owner=w, then=Value(held[w][0])) for w in owners),
                 output_field=DateTimeField())
    free = (Task.objects.select_for_update(skip_locked=True)
            .filter(state=TaskState.LEASED, kind=TaskKind.ACTIVITY, lease_owner__in=owners,
                    token__in=tokens).values("pk"))
    (Task.objects.filter(pk__in=free)
     .filter(Q(lease_expires_at__isnull=True) | Q(lease_expires_at__lt=until))
     .update(lease_expires_at=until))


def adopt(old_owner: str, new_owner: str, tokens: Collection[str],
          until: datetime) -> list[tuple[str, str]]:
    """Move the leases ``old_owner`` held under ``tokens`` to ``new_owner`` (the same worker
    on a new socket), pushing out their expiry; (token, kind) of each lease moved."""
    if not tokens:
        return []
    rows = list(Task.objects.select_for_update()
                .filter(lease_owner=old_owner, state=TaskState.LEASED, token__in=list(tokens))
                .values_list("pk", "token", "kind"))
    if not rows:
        return []
    Task.objects.filter(pk__in=[pk for pk, _, _ in rows], kind=TaskKind.ACTIVITY).update(
        lease_owner=new_owner, lease_expires_at=until)
    Task.objects.filter(pk__in=[pk for pk, _, _ in rows], kind=TaskKind.WORKFLOW).update(
        lease_owner=new_owner)
    return [(str(token), str(kind)) for _, token, kind in rows]


def hand_off(task: Task) -> None:
    """The worker handed the activity's completion to outside code (``CompleteAsync``): the
    lease stays live under its token, owned by no worker and with no lease expiry, so no
    disconnect or reclaim hands it back; only its attempt timers (start-to-close, heartbeat)
    and a completion by token end it."""
    task.lease_owner = ""
    task.lease_expires_at = None
    sql.update(task, ["lease_owner", "lease_expires_at"])


def extend_lease(token: str, until: datetime) -> None:
    """Push out the expiry of the live lease ``token`` (never bring it closer)."""
    Task.objects.filter(token=token, state=TaskState.LEASED,
                        lease_expires_at__lt=until).update(lease_expires_at=until)


# ---- reads and locks ------------------------------------------------------------------------


def leased_activity_tokens(execution_id: int) -> list[tuple[str, str]]:
    """(worker, token) of each activity of the run a worker holds."""
    return [(str(owner), str(token)) for owner, token in sql.fetch(
        f"SELECT lease_owner, token FROM {sql.table(Task)} "
        "WHERE execution_id = %s AND kind = %s AND state = %s",
        [execution_id, TaskKind.ACTIVITY.value, TaskState.LEASED.value])]


def lock_leased_activities(execution_id: int, seqs: Collection[int]) -> set[int]:
    """Lock the run's activity tasks of ``seqs``; the seqs of those a worker holds. Locked,
    so no dispatch tick leases one between this read and the caller's decision."""
    if not seqs:
        return set()
    marks = ", ".join(["%s"] * len(seqs))
    return {int(seq) for seq, state in sql.fetch(
        f"SELECT seq, state FROM {sql.table(Task)} WHERE execution_id = %s AND kind = %s "
        f"AND seq IN ({marks}){sql.for_update()}",
        [execution_id, TaskKind.ACTIVITY.value, *seqs]) if state == TaskState.LEASED}


def lock_by_schedule(execution_id: int, kind: TaskKind, scheduled_event_id: int) -> Task:
    return Task.objects.select_for_update().get(execution_id=execution_id, kind=kind,
                                                scheduled_event_id=scheduled_event_id)


def lock_activity(execution_id: int, seq: int | None) -> Task | None:
    return Task.objects.select_for_update().filter(
        execution_id=execution_id, kind=TaskKind.ACTIVITY, seq=seq).first()


def execution_of(task_id: int) -> int | None:
    row = Task.objects.filter(pk=task_id).values("execution_id").first()
    return None if row is None else int(row["execution_id"])


def lock_leased_id(task_id: int) -> Task | None:
    return Task.objects.select_for_update().filter(pk=task_id, state=TaskState.LEASED).first()


def leased_by(worker_id: str) -> list[int]:
    """The ids of the tasks ``worker_id`` holds."""
    return list(Task.objects.filter(lease_owner=worker_id, state=TaskState.LEASED)
                .values_list("pk", flat=True))


def busy() -> bool:
    """Whether any task is ready or leased: work that a worker has or is about to get (a task
    in back-off waits for its retry timer)."""
    return Task.objects.filter(state__in=(TaskState.READY, TaskState.LEASED)).exists()


def expired(now: datetime, limit: int) -> list[tuple[int, str]]:
    """(task id, owner) of leases that ran out before ``now``."""
    return list(Task.objects.filter(state=TaskState.LEASED, lease_expires_at__lt=now)
                .values_list("pk", "lease_owner")[:limit])


def leased_workflow_task(token: str, worker_id: str) -> Task | None:
    """The workflow task ``worker_id`` holds under ``token``, with its execution."""
    return (Task.objects.filter(token=token, state=TaskState.LEASED, lease_owner=worker_id,
                                kind=TaskKind.WORKFLOW).select_related("execution").first())


Wanted = tuple[str, TaskKind, Sequence[str]]  # (task queue, kind, type names)


def ready(wanted: Iterable[Wanted], limit: int, *, shard: tuple[int, int] = (0, 1)) -> list[Task]:
    """Up to ``limit`` ready tasks of these queues, kinds and types, oldest first, locked
    (those another transaction holds are skipped); with ``shard`` (index, count), only those
    of runs whose id is ``index`` modulo ``count``."""
    terms: list[str] = []
    params: list[Any] = [TaskState.READY.value]
    for task_queue, kind, types in wanted:
        types = list(types)
        terms.append(f"(task_queue = %s AND kind = %s AND type_name IN ({sql.marks(len(types))}))")
        params += [task_queue, str(kind), *types]
    if not terms:
        return []
    index, count = shard
    in_shard = ""
    if count > 1:
        in_shard = " AND execution_id %% %s = %s"
        params += [count, index]
    params.append(limit)
    return sql.objects(
        Task, f"SELECT {sql.columns(Task)} FROM {sql.table(Task)} WHERE state = %s "
        f"AND ({' OR '.join(terms)}){in_shard} ORDER BY id LIMIT %s"
        f"{sql.for_update()}{sql.skip_locked() if sql.for_update() else ''}", params)


def held_counts(worker_ids: Sequence[str]) -> dict[tuple[str, str], int]:
    """How many tasks of each kind each of these workers holds: {(worker, kind): n}."""
    held: dict[tuple[str, str], int] = defaultdict(int)
    if not worker_ids:
        return held
    for owner, kind, n in sql.fetch(
            f"SELECT lease_owner, kind, count(*) FROM {sql.table(Task)} WHERE state = %s "
            f"AND lease_owner IN ({sql.marks(len(worker_ids))}) GROUP BY lease_owner, kind",
            [TaskState.LEASED.value, *worker_ids]):
        held[(str(owner), str(kind))] = int(n)
    return held
