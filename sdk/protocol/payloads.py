"""Names for the JSON the protocol carries, and the one check every payload passes.

The names are aliases, not checks: a payload is whatever ``json.loads`` returns, and each
frame, command and event says which of them its fields hold. ``payload_problem`` is the
check: what the REST API, the dashboard and the worker socket refuse in a payload before it
reaches the database (PostgreSQL's text and jsonb cannot hold ``\\u0000``, no UTF-8 encoder
takes a lone surrogate, JSON has no NaN or infinity). Numbers of any size pass: they travel
as JSON text between engine processes (``dispatch.notify``), never through msgpack.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, TypeAlias

from sdk.protocol.limits import MAX_JSON_DEPTH

JSONValue: TypeAlias = Any
"""Any JSON value: a workflow's input and result, an activity's, a marker's data, details."""

JSONObject: TypeAlias = dict[str, Any]
"""A JSON object."""

WireEvent: TypeAlias = dict[str, Any]
"""A history event as sent to workers: ``{"event_id", "event_type", "timestamp",
"attributes"}`` (``workflows.core.events.Event.to_wire``)."""

WireCommand: TypeAlias = dict[str, Any]
"""A command as sent by workers: a JSON object with a ``kind`` (``encode_command``)."""


def text_problem(value: str) -> str | None:
    """Why ``value`` cannot be stored as text by every backend, or None."""
    if "\x00" in value:
        return "must not contain NUL (\\u0000) characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain unpaired surrogate characters"
    return None


def payload_problem(value: Any) -> str | None:
    """Why ``value`` cannot be stored as JSON by every backend, or None. Iterative, so a
    deep value costs no recursion."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            return f"is nested deeper than {MAX_JSON_DEPTH} levels"
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return f"strings {problem}"
        elif isinstance(item, float) and not math.isfinite(item):
            return "numbers must be finite"
        elif isinstance(item, Mapping):
            for key, child in item.items():
                stack.append((key, depth + 1))
                stack.append((child, depth + 1))
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return None


# ---- encoded payloads (a worker's and a client's PayloadCodec) ---------------------------

CODEC_KEY = "__sched_codec__"
"""The one key of an encoded payload: ``{"__sched_codec__": "<base64>"}``, the base64 (RFC 4648,
with padding) of what the codec's ``encode`` made of the payload's UTF-8 JSON text. The engine
stores and forwards it like any other JSON value; only a worker or client with the codec can
read it."""

PAYLOAD_FIELDS: dict[str, tuple[str, ...]] = {
    # commands, by kind
    "schedule_activity": ("input",),
    "complete_workflow": ("result",),
    "fail_workflow": ("failure",),
    "cancel_workflow": ("details",),
    "continue_as_new": ("input",),
    "start_child_workflow": ("input",),
    "signal_external_workflow": ("input",),
    "complete_update": ("result", "failure"),
    # frames, by type
    "activity_task": ("input", "heartbeat_details"),
    "activity_heartbeat": ("details",),
    "activity_task_completed": ("result",),
    "activity_task_failed": ("failure",),
    # history events, by event type
    "WorkflowExecutionStarted": ("input",),
    "ActivityTaskScheduled": ("input",),
    "ActivityTaskCompleted": ("result",),
    "ActivityTaskFailed": ("failure",),
    "ActivityTaskTimedOut": ("failure",),
    "ActivityTaskCanceled": ("details",),
    "WorkflowExecutionSignaled": ("input",),
    "WorkflowExecutionCompleted": ("result",),
    "WorkflowExecutionFailed": ("failure",),
    "WorkflowExecutionCanceled": ("details",),
    "WorkflowExecutionContinuedAsNew": ("input",),
    "StartChildWorkflowExecutionInitiated": ("input",),
    "ChildWorkflowExecutionCompleted": ("result",),
    "ChildWorkflowExecutionFailed": ("failure",),
    "ChildWorkflowExecutionCanceled": ("details",),
    "SignalExternalWorkflowExecutionInitiated": ("input",),
    "WorkflowExecutionUpdateCompleted": ("result", "failure"),
}
"""Which fields of a command, frame or event hold payloads a codec encodes. A field named
``failure`` holds a failure: its ``details`` are encoded, at every level of its ``cause`` chain
(its type, message and stack stay readable). Markers: ``MARKER_PAYLOAD_FIELDS``."""

MARKER_PAYLOAD_FIELDS: dict[str, tuple[str, ...]] = {
    "side_effect": ("data",),
    "local_activity": ("data.result", "data.failure"),
}
"""The payloads of a ``record_marker`` command and a ``MarkerRecorded`` event, by marker name
(a dotted name is a key of the marker's ``data`` object)."""


def is_encoded_payload(value: Any) -> bool:
    """Whether ``value`` is an encoded payload (``CODEC_KEY``'s one-key object)."""
    return (isinstance(value, dict) and len(value) == 1
            and isinstance(value.get(CODEC_KEY), str))
