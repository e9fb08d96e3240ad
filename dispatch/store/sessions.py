"""Worker session rows: one per connected worker socket."""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from datetime import datetime
from typing import Any

from django.db.models import Case, DateTimeField, Value, When

from dispatch.models import WorkerSession
from schedproject import sql

__all__ = ["WorkerSession", "channels", "credit", "drop", "live", "of_engines", "present",
           "register", "serving", "silent", "touch"]


def register(worker_id: str, **fields: Any) -> WorkerSession:
    session, _ = WorkerSession.objects.update_or_create(worker_id=worker_id, defaults=fields)
    return session


def credit(worker_id: str, *, max_workflow_tasks: int, max_activity_tasks: int,
           now: datetime) -> None:
    WorkerSession.objects.filter(worker_id=worker_id).update(
        max_workflow_tasks=max_workflow_tasks, max_activity_tasks=max_activity_tasks,
        last_seen_at=now)


def touch(heard: Mapping[str, datetime]) -> None:
    """Record when each of these workers was last heard from, in one statement."""
    if not heard:
        return
    WorkerSession.objects.filter(worker_id__in=list(heard)).update(last_seen_at=Case(
        *(When(worker_id=worker_id, then=Value(at)) for worker_id, at in heard.items()),
        output_field=DateTimeField()))


def present(worker_ids: Collection[str]) -> set[str]:
    """Those of ``worker_ids`` that still have a session."""
    if not worker_ids:
        return set()
    return set(WorkerSession.objects.filter(worker_id__in=list(worker_ids))
               .values_list("worker_id", flat=True))


def drop(worker_id: str) -> bool:
    """Delete the session; whether it was there."""
    return bool(WorkerSession.objects.filter(worker_id=worker_id).delete()[0])


def live(cutoff: datetime) -> list[WorkerSession]:
    """Sessions seen since ``cutoff`` (every dispatch tick asks: written out)."""
    return sql.objects(WorkerSession, f"SELECT {sql.columns(WorkerSession)} FROM "
                       f"{sql.table(WorkerSession)} WHERE last_seen_at >= %s", [cutoff])


def serving(task_queue: str, workflow_type: str, cutoff: datetime) -> list[tuple[str, str]]:
    """``(worker_id, channel_name)`` of the sessions seen since ``cutoff`` that serve
    ``workflow_type`` on ``task_queue``, oldest connection first."""
    rows = (WorkerSession.objects.filter(task_queue=task_queue, last_seen_at__gte=cutoff)
            .order_by("connected_at", "id")
            .values_list("worker_id", "channel_name", "workflow_types"))
    return [(worker_id, channel) for worker_id, channel, types in rows
            if isinstance(types, list) and workflow_type in types]


def silent(cutoff: datetime) -> list[str]:
    """The worker ids of sessions not seen since ``cutoff``."""
    return list(WorkerSession.objects.filter(last_seen_at__lt=cutoff)
                .values_list("worker_id", flat=True))


def channels(worker_ids: Sequence[str]) -> dict[str, str]:
    """The channel name of each of these workers that is connected."""
    return dict(WorkerSession.objects.filter(worker_id__in=worker_ids)
                .values_list("worker_id", "channel_name"))


def of_engines(engine_ids: Sequence[str]) -> list[str]:
    """The worker ids of the sessions these engines serve."""
    if not engine_ids:
        return []
    return list(WorkerSession.objects.filter(engine_id__in=engine_ids)
                .values_list("worker_id", flat=True))
