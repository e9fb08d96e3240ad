"""Executions and their history: the system of record.

An execution is one run ``(workflow_id, run_id)``. Its history is the append-only list of
``HistoryEvent`` rows with dense ids 1..n. The columns on ``Execution`` beside the identity
(status, next_event_id, state, result, failure, closed_at) are a snapshot derived from the
history, written in the same transaction as the events; ``state`` holds the serialized
``workflows.core.state.ExecutionState``.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from collections.abc import Collection
from enum import StrEnum
from typing import Any

from django.db import models
from django.db.models import Q

from schedproject import sql
from sdk.protocol.limits import MAX_NAME_LENGTH, MAX_REQUEST_ID_LENGTH, MAX_WORKFLOW_ID_LENGTH

from .core.events import Event, EventType
from .core.state import ExecutionState, Status


def enum_choices(enum: type[StrEnum]) -> list[tuple[str, str]]:
    """A core enum as model choices, labelled as ``TextChoices`` labels its members (so the
    migrations' choices stay as they were)."""
    return [(member.value, member.name.replace("_", " ").title()) for member in enum]


class Execution(models.Model):
    workflow_id = models.CharField(max_length=MAX_WORKFLOW_ID_LENGTH)
    run_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    workflow_type = models.CharField(max_length=MAX_NAME_LENGTH)
    task_queue = models.CharField(max_length=MAX_NAME_LENGTH)
    status = models.CharField(
        max_length=20, choices=[(s.value, s.value) for s in Status], default=Status.RUNNING.value
    )
    input = models.JSONField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    failure = models.JSONField(null=True, blank=True)
    created_at = models.DateTimeField()
    closed_at = models.DateTimeField(null=True, blank=True)
    next_event_id = models.IntegerField(default=1)
    # About how many bytes the history holds (its events' JSON), kept by each transition.
    history_size_bytes = models.BigIntegerField(default=0)
    state = models.JSONField(default=dict)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="children"
    )
    search_attributes = models.JSONField(default=dict, blank=True)
    # The worker that ran the last workflow task and caches the run (sticky execution), and
    # the first event id it has not seen.
    sticky_worker = models.CharField(max_length=64, blank=True, default="")
    sticky_next_event_id = models.IntegerField(default=0)
    # The last workflow task failure, while the run is retrying it (shown as "stuck").
    last_task_failure = models.JSONField(null=True, blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["workflow_id"],
                condition=Q(status="running"),
                name="one_open_run_per_workflow_id",
            ),
        ]
        indexes = [
            models.Index(fields=["workflow_id", "-created_at"], name="exec_wfid_created"),
            models.Index(fields=["-created_at", "-id"], name="exec_created"),
            models.Index(fields=["status", "-created_at", "-id"], name="exec_status_created"),
            models.Index(fields=["workflow_type", "-created_at", "-id"], name="exec_type_created"),
            models.Index(fields=["task_queue", "-created_at", "-id"], name="exec_queue_created"),
        ]
        # The dashboard's actions, one permission each (viewing needs ``view_execution``);
        # staff users may do all of them (workflows.dashboard.access).
        permissions = [
            ("start_workflow", "Can start workflows"),
            ("signal_workflow", "Can signal workflows"),
            ("cancel_workflow", "Can cancel workflows"),
            ("terminate_workflow", "Can terminate workflows"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} ({self.run_id})"

    @property
    def history_length(self) -> int:
        return self.next_event_id - 1

    def core_state(self) -> ExecutionState:
        return ExecutionState.from_dict(self.state)


class HistoryEvent(models.Model):
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="events")
    event_id = models.IntegerField()
    event_type = models.CharField(max_length=64, choices=[(t.value, t.value) for t in EventType])
    timestamp = models.DateTimeField()
    attributes = models.JSONField(default=dict)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["execution", "event_id"], name="dense_event_ids"),
        ]
        ordering = ["execution", "event_id"]

    def __str__(self) -> str:
        return f"{self.event_id} {self.event_type}"

    def to_core(self) -> Event:
        return Event(self.event_id, EventType(self.event_type), self.timestamp, self.attributes)

    def to_wire(self) -> dict[str, Any]:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type,
            "timestamp": self.timestamp.isoformat(),
            "attributes": self.attributes,
        }


class RequestRecord(models.Model):
    """A REST request that wrote (a start, a signal), by the ``request_id`` its caller gave:
    a retry with the same id is answered with this run and writes nothing."""

    request_id = models.CharField(max_length=MAX_REQUEST_ID_LENGTH, unique=True)
    kind = models.CharField(max_length=16)
    execution = models.ForeignKey(Execution, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.kind} {self.request_id}"


class TokenScope(models.TextChoices):
    ADMIN = "admin"
    API = "api"
    WORKER = "worker"


def hash_token(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


class ApiToken(models.Model):
    """A bearer token for the REST API and the worker socket, stored hashed."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    digest = models.CharField(max_length=64, unique=True)
    scope = models.CharField(max_length=10, choices=TokenScope.choices, default=TokenScope.ADMIN)
    created_at = models.DateTimeField(auto_now_add=True)
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…, {self.scope})"

    @classmethod
    def issue(cls, name: str, scope: str = TokenScope.ADMIN) -> tuple[ApiToken, str]:
        raw = "sched_" + secrets.token_urlsafe(32)
        token = cls.objects.create(name=name, prefix=raw[:12], digest=hash_token(raw), scope=scope)
        return token, raw

    @classmethod
    def verify(cls, raw: str, *, scope: str) -> ApiToken | None:
        """The live token matching ``raw`` that may act in ``scope`` (api or worker)."""
        if not raw or len(raw) > 200:
            return None
        # Every API request runs this: written out, not built by the ORM's query compiler.
        rows = sql.objects(
            cls, f"SELECT {sql.columns(cls)} FROM {sql.table(cls)} "
            "WHERE digest = %s AND revoked_at IS NULL ORDER BY id LIMIT 1", [hash_token(raw)])
        token = rows[0] if rows else None
        if token is None or token.scope not in (TokenScope.ADMIN, scope):
            return None
        return token

    @classmethod
    def live_ids(cls, ids: Collection[int]) -> set[int]:
        """Those of ``ids`` that are tokens still live (not revoked, not deleted)."""
        if not ids:
            return set()
        return set(cls.objects.filter(pk__in=ids, revoked_at__isnull=True)
                   .values_list("pk", flat=True))
