"""Services of the dispatcher and the worker consumer: sessions, leases, dispatch ticks."""

from __future__ import annotations

import logging
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db.models import Count, Q

from schedproject.transactions import atomic
from sdk import protocol
from timers.models import Timer, TimerKind
from workflows.core import decide
from workflows.models import Execution
from workflows.services._write import (
    Lessee,
    Outcome,
    create_attempt_timers,
    execution_id_from_token,
    lease,
    lock_execution,
    write_transition,
)
from workflows.services.tasks import stale, workflow_task_time_out

from . import wakeup
from .deliveries import activity_task_message, full_history
from .fencing import check_term
from .models import Task, TaskKind, TaskState, WorkerSession

log = logging.getLogger("sched.dispatch")
Delivery = tuple[str, dict[str, Any]]  # (channel name, task message)


def _config() -> Any:
    return settings.SCHED


# ---- worker sessions -----------------------------------------------------------------------


def worker_register(*, worker_id: str, channel_name: str, engine_id: str, hello: protocol.Hello,
                    now: datetime) -> WorkerSession:
    with atomic():
        session, _ = WorkerSession.objects.update_or_create(
            worker_id=worker_id,
            defaults={
                "channel_name": channel_name, "engine_id": engine_id,
                "identity": hello.identity[:255], "task_queue": hello.task_queue,
                "workflow_types": sorted(set(hello.workflow_types)),
                "activity_types": sorted(set(hello.activity_types)),
                "max_workflow_tasks": hello.max_workflow_tasks,
                "max_activity_tasks": hello.max_activity_tasks,
                "connected_at": now, "last_seen_at": now,
            },
        )
        return session


def worker_credit(*, worker_id: str, max_workflow_tasks: int, max_activity_tasks: int,
                  now: datetime) -> None:
    with atomic():
        WorkerSession.objects.filter(worker_id=worker_id).update(
            max_workflow_tasks=max_workflow_tasks, max_activity_tasks=max_activity_tasks,
            last_seen_at=now)


def worker_ping(*, worker_id: str, now: datetime) -> bool:
    """The worker is alive: keep its session and its activity leases. False if the session
    is gone (the engine dropped it as dead): the worker must reconnect."""
    with atomic():
        if not WorkerSession.objects.filter(worker_id=worker_id).update(last_seen_at=now):
            return False
        Task.objects.filter(lease_owner=worker_id, state=TaskState.LEASED,
                            kind=TaskKind.ACTIVITY).update(
            lease_expires_at=now + timedelta(seconds=_config().lease_timeout_seconds))
        return True


def worker_disconnect(*, worker_id: str, now: datetime, term: int | None = None) -> int:
    """The worker's socket closed: drop its session and hand its tasks back. Returns how many
    tasks went back."""
    with atomic():
        if term is not None:
            check_term("dispatcher", term)
        WorkerSession.objects.filter(worker_id=worker_id).delete()
    ids = list(Task.objects.filter(lease_owner=worker_id, state=TaskState.LEASED)
               .values_list("pk", flat=True))
    for task_id in ids:
        release_task(task_id, now=now, term=term)
    return len(ids)


def release_task(task_id: int, *, now: datetime, owner: str | None = None,
                 term: int | None = None) -> Outcome | None:
    """Hand a leased task back: an activity is ready again with the same input and attempt;
    a started workflow task is timed out and scheduled again."""
    with atomic():
        if term is not None:  # the dispatcher reclaiming: a leader write
            check_term("dispatcher", term)
        row = Task.objects.filter(pk=task_id).values("execution_id").first()
        if row is None:
            return None
        execution = lock_execution(row["execution_id"])
        task = Task.objects.select_for_update().filter(pk=task_id,
                                                       state=TaskState.LEASED).first()
        if task is None or (owner is not None and task.lease_owner != owner):
            return None
        if task.kind == TaskKind.WORKFLOW:
            return workflow_task_time_out(execution, task, now)
        Timer.objects.filter(execution=execution, kind=TimerKind.ACTIVITY_ATTEMPT,
                             seq=task.seq).delete()
        task.state = TaskState.READY
        task.token = ""
        task.lease_owner = ""
        task.leased_at = None
        task.lease_expires_at = None
        task.save(update_fields=["state", "token", "lease_owner", "leased_at",
                                 "lease_expires_at"])
        wakeup.on_commit(wakeup.DISPATCH)
        return None


def reclaim(*, now: datetime, term: int | None = None) -> int:
    """Drop sessions not seen for a lease timeout and hand back expired leases."""
    cutoff = now - timedelta(seconds=_config().lease_timeout_seconds)
    dead = list(WorkerSession.objects.filter(last_seen_at__lt=cutoff)
                .values_list("worker_id", flat=True))
    count = 0
    for worker_id in dead:
        log.warning("worker %s went silent; handing its tasks back", worker_id)
        count += worker_disconnect(worker_id=worker_id, now=now, term=term)
    expired = list(Task.objects.filter(state=TaskState.LEASED, lease_expires_at__lt=now)
                   .values_list("pk", "lease_owner")[:500])
    for task_id, owner in expired:
        release_task(task_id, now=now, owner=owner, term=term)
        count += 1
    return count


def history_for(*, token: str, worker_id: str) -> list[dict[str, Any]]:
    """The whole history of the run of a workflow task the worker holds."""
    if execution_id_from_token(token) is None:
        raise stale()
    task = Task.objects.filter(token=token, state=TaskState.LEASED, lease_owner=worker_id,
                               kind=TaskKind.WORKFLOW).select_related("execution").first()
    if task is None:
        raise stale()
    execution = task.execution
    started = execution.core_state().workflow_task
    through = started.started_event_id if started and started.started_event_id else 0
    return full_history(execution, through=through)


# ---- the dispatch tick ---------------------------------------------------------------------


@dataclass
class _Slot:
    session: WorkerSession
    workflow: int
    activity: int

    def lessee(self) -> Lessee:
        cfg = _config()
        return Lessee(self.session.worker_id, self.session.task_queue,
                      frozenset(self.session.workflow_types),
                      frozenset(self.session.activity_types), 1, 0, cfg.lease_timeout_seconds,
                      cfg.workflow_task_timeout_seconds)


def dispatch_tick(*, now: datetime, term: int, batch: int = 200) -> list[Delivery]:
    """Lease ready tasks to live workers with free capacity. Returns the messages to send,
    once this has committed.

    Only tasks some worker with room can take are read (by queue, kind and type), at most as
    many as there are free slots, so a tick costs little when workers are full.
    """
    slots = _free_slots(now)
    wanted = _wanted(slots)
    limit = min(batch, sum(s.workflow + s.activity for s in slots))
    if wanted is None or limit <= 0:
        return []
    deliveries: list[Delivery] = []
    with atomic():
        check_term("dispatcher", term)
        tasks = list(Task.objects.select_for_update(skip_locked=True)
                     .filter(wanted, state=TaskState.READY).order_by("id")[:limit])
        workflow_tasks = [t for t in tasks if t.kind == TaskKind.WORKFLOW]
        executions = {e.pk: e for e in Execution.objects.select_for_update(skip_locked=True)
                      .filter(pk__in=[t.execution_id for t in workflow_tasks])}
        leased_activities: list[Task] = []
        for task in tasks:
            if task.kind == TaskKind.ACTIVITY:
                slot = _pick(slots, task, sticky="")
                if slot is not None:
                    lease(task, slot.session.worker_id, now, _config().lease_timeout_seconds)
                    slot.activity -= 1
                    leased_activities.append(task)
                continue
            execution = executions.get(task.execution_id)
            if execution is None:
                continue  # busy with another transition; next tick
            slot = _pick(slots, task, sticky=execution.sticky_worker)
            if slot is None:
                continue
            deliveries.extend(_start_workflow_task(execution, task, slot, now))
        if leased_activities:
            Task.objects.bulk_update(leased_activities, ["state", "token", "lease_owner",
                                                         "leased_at", "lease_expires_at"])
            create_attempt_timers(leased_activities, now)
            runs = Execution.objects.in_bulk({t.execution_id for t in leased_activities})
            by_worker = {s.session.worker_id: s.session.channel_name for s in slots}
            deliveries.extend(
                (by_worker[task.lease_owner], activity_task_message(runs[task.execution_id], task))
                for task in leased_activities)
    return deliveries


def _start_workflow_task(execution: Execution, task: Task, slot: _Slot,
                         now: datetime) -> list[Delivery]:
    try:
        t = decide.start_workflow_task(execution.core_state(),
                                       scheduled_event_id=task.scheduled_event_id,
                                       worker=slot.session.worker_id, now=now)
    except decide.Rejected:
        log.warning("dropping orphaned workflow task %s", task.pk)
        task.delete()
        return []
    outcome = write_transition(execution, t, lessee=slot.lessee(), task=task)
    slot.workflow -= 1
    return [(slot.session.channel_name, m) for m in outcome.deliveries]


def _wanted(slots: list[_Slot]) -> Q | None:
    """Which ready tasks the workers with room can take: by queue, kind and type."""
    wanted: Q | None = None
    for s in slots:
        for kind, room, types in ((TaskKind.WORKFLOW, s.workflow, s.session.workflow_types),
                                  (TaskKind.ACTIVITY, s.activity, s.session.activity_types)):
            if room > 0 and types:
                q = Q(task_queue=s.session.task_queue, kind=kind, type_name__in=types)
                wanted = q if wanted is None else wanted | q
    return wanted


def _free_slots(now: datetime) -> list[_Slot]:
    cutoff = now - timedelta(seconds=_config().lease_timeout_seconds)
    sessions = list(WorkerSession.objects.filter(last_seen_at__gte=cutoff))
    if not sessions:
        return []
    held: dict[tuple[str, str], int] = defaultdict(int)
    for row in (Task.objects.filter(state=TaskState.LEASED,
                                    lease_owner__in=[s.worker_id for s in sessions])
                .values("lease_owner", "kind").annotate(n=Count("id"))):
        held[(row["lease_owner"], row["kind"])] = row["n"]
    slots = [
        _Slot(s, s.max_workflow_tasks - held[(s.worker_id, TaskKind.WORKFLOW)],
              s.max_activity_tasks - held[(s.worker_id, TaskKind.ACTIVITY)])
        for s in sessions
    ]
    return [s for s in slots if s.workflow > 0 or s.activity > 0]


def _pick(slots: list[_Slot], task: Task, *, sticky: str) -> _Slot | None:
    """The worker for ``task``: the run's sticky worker if it can take it, else the one with
    the most room among those serving the task's queue and type."""
    workflow = task.kind == TaskKind.WORKFLOW
    eligible = [
        s for s in slots
        if s.session.task_queue == task.task_queue
        and (s.workflow if workflow else s.activity) > 0
        and task.type_name in (s.session.workflow_types if workflow
                               else s.session.activity_types)
    ]
    if not eligible:
        return None
    for s in eligible:
        if sticky and s.session.worker_id == sticky:
            return s
    return max(eligible, key=lambda s: s.workflow if workflow else s.activity)
