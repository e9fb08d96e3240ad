"""``Replayer``: does today's workflow code still match the runs already recorded?

``Replayer(workflows).replay(history)`` replays one exported history against the code, the
way a worker does after a cache miss, and raises ``sdk.NonDeterminismError`` where the code
issues other commands than the history holds (an activity added, removed or moved, a timer
where there was an activity, a run that now fails where it completed). It returns normally
when the code matches. Which workflow is replayed is the history's own ``workflow_type``.

A history is what sched exports: the events of ``GET /api/workflows/{id}/history`` (a page,
or all pages' ``events`` joined), the dashboard's "Download history (JSON)" file,
``handle.history()``, or a golden file of ``fixtures/histories/`` -- as parsed JSON, JSON
text, or a path to a JSON file.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from sdk._errors import NonDeterminismError, SchedError
from sdk._runtime import replay_history
from sdk._workflow import workflow_registry
from sdk.protocol import EventType

__all__ = ["ReplayFailureError", "Replayer"]

History = str | bytes | os.PathLike[str] | Mapping[str, Any] | Iterable[Mapping[str, Any]]


class ReplayFailureError(SchedError):
    """Replaying failed otherwise than by non-determinism: the workflow code raised a bug
    (``cause`` ``workflow_error``) or the history is not one this SDK can replay."""

    def __init__(self, message: str, *, cause: str, failure: Mapping[str, Any] | None) -> None:
        super().__init__(message)
        self.cause = cause
        self.failure = dict(failure) if failure is not None else None


class Replayer:
    """Replays exported histories against ``workflows`` (``@sdk.workflow`` functions)."""

    def __init__(self, workflows: Iterable[Any]) -> None:
        self._workflows = workflow_registry(workflows)
        if not self._workflows:
            raise ValueError("a replayer needs at least one workflow")

    def replay(self, history: History, *, workflow_id: str | None = None,
               run_id: str | None = None) -> None:
        """Replay one history; raises ``NonDeterminismError`` if the code does not match it.
        ``workflow_id``/``run_id`` default to the history's own (where it says them)."""
        doc = _load(history)
        events = _events(doc)
        if not events or events[0].get("event_type") != EventType.WORKFLOW_EXECUTION_STARTED:
            raise ReplayFailureError("a history starts with WorkflowExecutionStarted",
                                     cause="invalid_history", failure=None)
        workflow_type = str(events[0].get("attributes", {}).get("workflow_type") or "")
        definition = self._workflows.get(workflow_type)
        if definition is None:
            raise ReplayFailureError(
                f"the history is of workflow type {workflow_type!r}, which this replayer was "
                f"not given (it has {sorted(self._workflows)})", cause="unknown_workflow_type",
                failure=None)
        header = doc if isinstance(doc, Mapping) else {}
        result = replay_history(
            definition, events,
            workflow_id=workflow_id or str(header.get("workflow_id") or "replay"),
            run_id=run_id or str(header.get("run_id") or "replay"))
        if result.failure is not None:
            message = str(result.failure.get("message") or result.cause)
            if result.cause == "nondeterminism":
                raise NonDeterminismError(message)
            raise ReplayFailureError(f"{result.cause}: {message}", cause=str(result.cause),
                                     failure=result.failure)


def _load(history: History) -> Any:
    if isinstance(history, os.PathLike):
        return json.loads(Path(history).read_text())
    if isinstance(history, str | bytes):
        return json.loads(history)
    if isinstance(history, Mapping):
        return history
    return list(history)


def _events(doc: Any) -> list[dict[str, Any]]:
    """The events of a history document: a list of events, or an object holding them under
    ``events`` (a history page, the dashboard's download, a golden file)."""
    events = doc.get("events") if isinstance(doc, Mapping) else doc
    if not isinstance(events, list) or not all(isinstance(e, Mapping) for e in events):
        raise ReplayFailureError("a history is a list of events, or an object with `events`",
                                 cause="invalid_history", failure=None)
    return sorted((dict(e) for e in events), key=lambda e: int(e.get("event_id") or 0))

