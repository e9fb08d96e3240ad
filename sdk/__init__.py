"""sched's SDK: what workflow and activity code, workers and clients import.

Imports no Django: a worker needs only this package, ``websockets`` and ``httpx``. The public
names are loaded on first use, so importing ``sdk.protocol`` (the wire contract, which the
engine's core imports) loads neither the worker's nor the client's dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
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
        ChildWorkflowError,
        ContinueAsNewError,
        NonDeterminismError,
        SchedError,
        WorkflowFailureError,
    )
    from sdk._retry import RetryPolicy
    from sdk._worker import Worker
    from sdk._workflow import (
        ChildWorkflowHandle,
        Signal,
        WorkflowContext,
        WorkflowInfo,
        workflow,
    )

# Where each public name is defined.
_EXPORTS: dict[str, str] = {
    "ActivityCancelledError": "sdk._activity",
    "ActivityContext": "sdk._activity",
    "ActivityError": "sdk._errors",
    "ActivityInfo": "sdk._activity",
    "ApplicationError": "sdk._errors",
    "AsyncClient": "sdk._client",
    "AsyncWorkflowHandle": "sdk._client",
    "ChildWorkflowError": "sdk._errors",
    "ChildWorkflowHandle": "sdk._workflow",
    "ContinueAsNewError": "sdk._errors",
    "Client": "sdk._client",
    "NonDeterminismError": "sdk._errors",
    "RetryPolicy": "sdk._retry",
    "SchedAPIError": "sdk._client",
    "SchedError": "sdk._errors",
    "Signal": "sdk._workflow",
    "Worker": "sdk._worker",
    "WorkflowAlreadyStartedError": "sdk._client",
    "WorkflowContext": "sdk._workflow",
    "WorkflowFailureError": "sdk._errors",
    "WorkflowHandle": "sdk._client",
    "WorkflowInfo": "sdk._workflow",
    "activity": "sdk._activity",
    "workflow": "sdk._workflow",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'sdk' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


__all__ = [
    "ActivityCancelledError",
    "ActivityContext",
    "ActivityError",
    "ActivityInfo",
    "ApplicationError",
    "AsyncClient",
    "AsyncWorkflowHandle",
    "ChildWorkflowError",
    "ChildWorkflowHandle",
    "Client",
    "ContinueAsNewError",
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
