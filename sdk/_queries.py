"""Queries: read a workflow's state through the handlers its code set, changing nothing.

Workflow code sets ``ctx.set_query_handler(name, fn)``; a client's query reaches a worker as a
``query_task`` frame, and the worker answers it from the run's state: the cached instance when
it holds the run (sticky execution; an instance in the cache is never mid-activation), or a
fresh instance that replays the run's history (``history_for_query``: through the last
workflow task that completed, for an open run). The handler is called on the worker's side
of that instance, after its activation, with no workflow code running.

A query must not change the run: a handler that issues a command (starts an activity or a
timer, cancels one, draws from ``ctx.random()``...) fails the query (``query_failed``) and
never the workflow, and no command reaches the engine. The guard is ``QueryHandlers.check``,
called by the runtime wherever a command is issued or deterministic state is drawn. Because
such a handler may have half-changed the instance before the guard stopped it (a cancel hook),
the worker drops a cached instance after such a query; the next workflow task replays.

Rejected: running the handler inside the workflow's event loop as a task (it could await
durable calls, which is the update's job, not the query's), and answering queries in the
engine from the stored snapshot (the state a query reads is the workflow code's own).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sdk._errors import SchedError
from sdk.protocol import EventType, WireEvent
from sdk.protocol.limits import MAX_NAME_LENGTH

__all__ = ["NOT_RUN_YET", "NOT_RUN_YET_CODE", "QUERY_FAILED", "QUERY_NOT_FOUND", "UPDATE_NOT_FOUND",
           "UPDATE_REJECTED", "QueryAnswer", "QueryHandlers", "history_for_query", "ran"]

QUERY_NOT_FOUND = "query_not_found"
QUERY_FAILED = "query_failed"
# An update's validation (``query_task`` with ``update_validation``) answers these.
UPDATE_NOT_FOUND = "update_not_found"
UPDATE_REJECTED = "update_rejected"
NOT_RUN_YET_CODE = "not_run_yet"

_TASK_OUTCOMES = frozenset({EventType.WORKFLOW_TASK_COMPLETED, EventType.WORKFLOW_TASK_FAILED,
                            EventType.WORKFLOW_TASK_TIMED_OUT})


class QueryCommandError(SchedError):
    """Raised into a query handler that tried to change the run."""


@dataclass(frozen=True, slots=True)
class QueryAnswer:
    """A query's outcome: ``result``, or ``error`` (``query_not_found``, ``query_failed``)
    with ``message``. ``changed``: the handler tried to change the run (its instance may
    not be trusted any more)."""

    result: Any = None
    error: str | None = None
    message: str = ""
    changed: bool = False


NOT_RUN_YET = QueryAnswer(error=QUERY_NOT_FOUND, message=(
    "the workflow has not run yet: no workflow task of it has completed, so it has set no "
    "query handler"))


class QueryHandlers:
    """The query handlers of one workflow instance, and the guard that keeps queries from
    changing it."""

    __slots__ = ("_handlers", "_running", "_violation")

    def __init__(self) -> None:
        self._handlers: dict[str, Callable[..., Any]] = {}
        self._running = False
        self._violation: str | None = None

    def set(self, name: str, fn: Callable[..., Any] | None) -> None:
        if not isinstance(name, str) or not name or len(name) > MAX_NAME_LENGTH:
            raise ValueError(
                f"a query name must be a non-empty string of at most {MAX_NAME_LENGTH}")
        if fn is None:
            self.check("remove a query handler")
            self._handlers.pop(name, None)
            return
        if not callable(fn):
            raise TypeError(f"a query handler must be callable, not {fn!r}")
        if inspect.iscoroutinefunction(fn):
            raise TypeError("a query handler must be a plain (sync) function: a query reads "
                            "the workflow's state and cannot await")
        self.check("set a query handler")
        self._handlers[name] = fn

    def check(self, what: str) -> None:
        """Called where the run would change (a command, a draw of ``ctx.random()``): refused
        while a query handler runs."""
        if self._running:
            message = f"a query handler must not change the workflow: it tried to {what}"
            if self._violation is None:
                self._violation = message
            raise QueryCommandError(message)

    def validate(self, name: str, validator: Callable[..., Any],
                 args: list[Any]) -> QueryAnswer:
        """Run an update's ``validator`` on ``args`` under the same guard as a query (it
        must not change the run): ``update_rejected`` with the exception's message if it
        raised or tried to change the run. Never raises."""
        self._running, self._violation = True, None
        try:
            value = validator(*args)
            if inspect.isawaitable(value):
                close = getattr(value, "close", None)
                if callable(close):
                    close()
                raise TypeError("the update validator returned an awaitable: validators "
                                "must be sync functions")
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            violation = self._violation
            message = violation or str(getattr(exc, "message", "") or exc) or type(exc).__name__
            return QueryAnswer(error=UPDATE_REJECTED, message=message,
                               changed=violation is not None)
        finally:
            self._running = False
        if self._violation is not None:
            return QueryAnswer(error=UPDATE_REJECTED, message=self._violation, changed=True)
        return QueryAnswer()

    def answer(self, name: str, args: list[Any]) -> QueryAnswer:
        """Call the handler ``name`` with ``args``. Never raises."""
        fn = self._handlers.get(name)
        if fn is None:
            known = ", ".join(repr(n) for n in sorted(self._handlers)) or "none"
            return QueryAnswer(error=QUERY_NOT_FOUND,
                               message=f"the workflow has no query handler {name!r} "
                                       f"(handlers: {known})")
        self._running, self._violation = True, None
        try:
            value = fn(*args)
            if inspect.isawaitable(value):
                close = getattr(value, "close", None)
                if callable(close):
                    close()
                raise TypeError("the query handler returned an awaitable: query handlers "
                                "must be sync functions")
            result = json.loads(json.dumps(value))
        except BaseException as exc:  # the handler's own error, whatever it is
            if isinstance(exc, KeyboardInterrupt | SystemExit):
                raise
            violation = self._violation
            message = violation or f"the query handler {name!r} raised " \
                                   f"{type(exc).__name__}: {exc}"
            return QueryAnswer(error=QUERY_FAILED, message=message, changed=violation is not None)
        finally:
            self._running = False
        if self._violation is not None:  # it caught the refusal and returned anyway
            return QueryAnswer(error=QUERY_FAILED, message=self._violation, changed=True)
        return QueryAnswer(result=result)


def history_for_query(events: list[WireEvent]) -> list[WireEvent]:
    """The events a fresh instance replays to answer a query: all of a closed run's, an open
    run's through its last completed workflow task (a task in flight, whose outcome is not
    in history yet, is left out: replaying it would run its code as new)."""
    for i in range(len(events) - 1, -1, -1):
        event_type = events[i]["event_type"]
        if event_type in _TASK_OUTCOMES:
            return events
        if event_type == EventType.WORKFLOW_TASK_STARTED:
            return events[:i]
    return events


def ran(events: list[WireEvent]) -> bool:
    """Whether the workflow code has run in this history (a workflow task completed): before
    that it has set no query handler."""
    return any(e["event_type"] == EventType.WORKFLOW_TASK_COMPLETED for e in events)
