"""Task rows, worker sessions and leadership.

A task is a unit of work for a worker: a workflow task (run the workflow code against its
history) or an activity task (one attempt of an activity). Tasks are rows, so nothing is lost
when Redis or an engine goes away: a leased task whose lease runs out is ready again.
The kinds and states are the core's (``workflows.core.effects``); ``dispatch.store`` is the
one module that writes these tables.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from sdk.protocol.limits import MAX_NAME_LENGTH
from workflows.core.effects import TaskKind, TaskState
from workflows.models import Execution, enum_choices

__all__ = ["EngineProcess", "Leadership", "Task", "TaskKind", "TaskState", "WorkerSession"]


class Task(models.Model):
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="tasks")
    kind = models.CharField(max_length=10, choices=enum_choices(TaskKind))
    task_queue = models.CharField(max_length=MAX_NAME_LENGTH)
    # The workflow type (workflow tasks) or activity type (activity tasks): a worker gets only
    # the types it registered.
    type_name = models.CharField(max_length=MAX_NAME_LENGTH)
    state = models.CharField(max_length=10, choices=enum_choices(TaskState),
                             default=TaskState.READY)
    scheduled_event_id = models.IntegerField()
    seq = models.IntegerField(null=True, blank=True)
    attempt = models.IntegerField(default=1)
    # Everything needed to run the task again, kept for every re-delivery.
    input = models.JSONField(null=True, blank=True)
    options = models.JSONField(default=dict, blank=True)
    token = models.CharField(max_length=64, blank=True, default="")
    lease_owner = models.CharField(max_length=64, blank=True, default="")
    leased_at = models.DateTimeField(null=True, blank=True)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    heartbeat_details = models.JSONField(null=True, blank=True)
    last_heartbeat_at = models.DateTimeField(null=True, blank=True)
    last_failure = models.JSONField(null=True, blank=True)
    cancel_requested = models.BooleanField(default=False)
    created_at = models.DateTimeField()

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["execution", "kind", "scheduled_event_id"], name="one_task_per_schedule"
            ),
            models.UniqueConstraint(fields=["token"], condition=Q(state="leased"),
                                    name="one_task_per_lease_token"),
        ]
        indexes = [
            models.Index(fields=["task_queue", "id"], condition=Q(state="ready"),
                         name="task_ready"),
            models.Index(fields=["lease_owner"], condition=Q(state="leased"),
                         name="task_leased_owner"),
            models.Index(fields=["lease_expires_at"], condition=Q(state="leased"),
                         name="task_lease_expiry"),
        ]

    def __str__(self) -> str:
        return f"{self.kind} task {self.id} ({self.state})"


class WorkerSession(models.Model):
    """A connected worker: one websocket, served by one engine process."""

    worker_id = models.CharField(max_length=64, unique=True)
    channel_name = models.CharField(max_length=255)
    engine_id = models.CharField(max_length=64)
    identity = models.CharField(max_length=MAX_NAME_LENGTH, blank=True, default="")
    task_queue = models.CharField(max_length=MAX_NAME_LENGTH)
    workflow_types = models.JSONField(default=list)
    activity_types = models.JSONField(default=list)
    max_workflow_tasks = models.IntegerField(default=0)
    max_activity_tasks = models.IntegerField(default=0)
    connected_at = models.DateTimeField()
    last_seen_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.identity or self.worker_id} on {self.task_queue}"


class EngineProcess(models.Model):
    """A running engine process: it beats ``heartbeat_at`` while it lives. The worker
    sessions it serves (``WorkerSession.engine_id``) die with it, and the dispatcher's
    leader releases them once the process is known dead (``dispatch.services.reclaim``).
    An engine that finds its row gone was declared dead: it closes its worker sockets."""

    engine_id = models.CharField(max_length=64, unique=True)
    host = models.CharField(max_length=255)
    pid = models.IntegerField()
    started_at = models.DateTimeField()
    heartbeat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"engine {self.engine_id}"


class Leadership(models.Model):
    """The fencing term of a singleton loop. A new leader bumps ``term``; every leader write
    checks it, so a paused leader that lost its lock cannot write as leader any more."""

    name = models.CharField(max_length=64, unique=True)
    term = models.BigIntegerField(default=0)
    holder = models.CharField(max_length=64, blank=True, default="")
    renewed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} term {self.term} ({self.holder})"
