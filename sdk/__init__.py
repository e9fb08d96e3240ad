"""sched's SDK: what workflow and activity code, workers and clients import.

Imports no Django: a worker needs only this package, ``websockets`` and ``httpx``.
"""

from __future__ import annotations

from sdk._activity import ActivityCancelledError, ActivityContext, ActivityInfo, activity
from sdk._client import (
    AsyncClient,
    AsyncWorkflowHandle,
    Client,
    SchedAPIError,
    WorkflowAlreadyStartedError,
    WorkflowHandle,
)
from sdk._errors import (
    ActivityError,
    ApplicationError,
    NonDeterminismError,
    SchedError,
    WorkflowFailureError,
)
from sdk._retry import RetryPolicy
from sdk._worker import Worker
from sdk._workflow import Signal, WorkflowContext, WorkflowInfo, workflow

__all__ = [
    "ActivityCancelledError",
    "ActivityContext",
    "ActivityError",
    "ActivityInfo",
    "ApplicationError",
    "AsyncClient",
    "AsyncWorkflowHandle",
    "Client",
    "NonDeterminismError",
    "RetryPolicy",
    "SchedAPIError",
    "SchedError",
    "Signal",
    "Worker",
    "WorkflowAlreadyStartedError",
    "WorkflowContext",
    "WorkflowFailureError",
    "WorkflowHandle",
    "WorkflowInfo",
    "activity",
    "workflow",
]
