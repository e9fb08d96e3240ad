"""The task messages sent to workers, built from task rows and history.

Pure builders over rows the caller holds; the history they need beyond what the caller's
transaction has in memory is read through ``workflows.store``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from sdk import protocol
from sdk.protocol.limits import HISTORY_PAGE_BYTES, HISTORY_PAGE_EVENTS
from workflows import store as executions
from workflows.core.events import Event
from workflows.models import Execution

from .store import Task


def workflow_task_message(execution: Execution, task: Task, *, first_event_id: int,
                          recent: Sequence[Event] = ()) -> dict[str, Any]:
    """A workflow task with the history from ``first_event_id`` through its WorkflowTaskStarted.

    ``recent`` are events this transaction just wrote (and holds in memory); older ones are
    read from the database.
    """
    last = execution.next_event_id - 1
    if first_event_id == 1 and last > HISTORY_PAGE_EVENTS:
        first_event_id = last  # too long for one frame: the worker asks for it in pages
    first_recent = recent[0].event_id if recent else execution.next_event_id
    events: list[dict[str, Any]] = []
    if first_event_id < first_recent:
        events = executions.history(execution, first_event_id, first_recent)
    events.extend(e.to_wire() for e in recent if e.event_id >= first_event_id)
    if first_event_id == 1 and len(events) > 1 and _size(events) > HISTORY_PAGE_BYTES:
        first_event_id, events = last, events[-1:]
    return protocol.WorkflowTask(
        token=task.token, workflow_id=execution.workflow_id, run_id=str(execution.run_id),
        workflow_type=execution.workflow_type, task_queue=task.task_queue, attempt=task.attempt,
        first_event_id=first_event_id, events=events,
        traceparent=execution.search_attributes.get("traceparent"),
        history_length=last, history_size_bytes=execution.history_size_bytes,
    ).to_dict()


def activity_task_message(execution: Execution, task: Task) -> dict[str, Any]:
    options = task.options
    return protocol.ActivityTask(
        token=task.token, workflow_id=execution.workflow_id, run_id=str(execution.run_id),
        workflow_type=execution.workflow_type, activity_id=str(task.seq),
        activity_type=task.type_name, task_queue=task.task_queue, input=task.input,
        attempt=task.attempt, scheduled_at=options.get("scheduled_at", ""),
        heartbeat_details=task.heartbeat_details,
        heartbeat_timeout=(options["heartbeat_ms"] / 1000 if options.get("heartbeat_ms")
                           else None),
        start_to_close_timeout=(options["start_to_close_ms"] / 1000
                                if options.get("start_to_close_ms") else None),
        traceparent=execution.search_attributes.get("traceparent"),
    ).to_dict()


def history_page(execution: Execution, *, first: int,
                 through: int) -> tuple[list[dict[str, Any]], bool]:
    """The run's events from ``first`` through ``through``, one ``history`` frame's worth
    (``HISTORY_PAGE_EVENTS``, about ``HISTORY_PAGE_BYTES``); and whether more follow."""
    before = min(through, first + HISTORY_PAGE_EVENTS - 1) + 1
    events = executions.history(execution, first, before) if first <= through else []
    size = 0
    for i, event in enumerate(events):
        size += _size(event)
        if size > HISTORY_PAGE_BYTES and i > 0:
            events = events[:i]
            break
    return events, bool(events) and events[-1]["event_id"] < through


def _size(value: Any) -> int:
    return len(json.dumps(value, separators=(",", ":")))
