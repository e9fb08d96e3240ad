"""sched's SDK: what workflow and activity code, workers and clients import.

Imports no Django: a worker needs only this package, ``websockets`` and ``httpx``. The public
names are loaded on first use, so importing ``sdk.protocol`` (the wire contract, which the
engine's core imports) loads neither the worker's nor the client's dependencies.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sdk._activity import (
        ActivityCancelledError,
        ActivityContext,
        ActivityInfo,
        CompleteAsync,
        activity,
    )
    from sdk._client import (
        AsyncActivityHandle,
        AsyncClient,
        AsyncClientActivityHandle,
        AsyncWorkflowHandle,
        Client,
        SchedAPIError,
        WorkflowAlreadyStartedError,
        WorkflowHandle,
        WorkflowUpdateFailedError,
    )
    from sdk._converter import PayloadCodec, PayloadConversionError
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
    "AsyncActivityHandle": "sdk._client",
    "AsyncClient": "sdk._client",
    "AsyncClientActivityHandle": "sdk._client",
    "AsyncWorkflowHandle": "sdk._client",
    "ChildWorkflowError": "sdk._errors",
    "ChildWorkflowHandle": "sdk._workflow",
    "ContinueAsNewError": "sdk._errors",
    "Client": "sdk._client",
    "CompleteAsync": "sdk._activity",
    "NonDeterminismError": "sdk._errors",
    "PayloadCodec": "sdk._converter",
    "PayloadConversionError": "sdk._converter",
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
    "WorkflowUpdateFailedError": "sdk._client",
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
    "AsyncActivityHandle",
    "AsyncClient",
    "AsyncClientActivityHandle",
    "AsyncWorkflowHandle",
    "ChildWorkflowError",
    "ChildWorkflowHandle",
    "Client",
    "CompleteAsync",
    "ContinueAsNewError",
    "NonDeterminismError",
    "PayloadCodec",
    "PayloadConversionError",
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
    "WorkflowUpdateFailedError",
    "activity",
    "workflow",
]
