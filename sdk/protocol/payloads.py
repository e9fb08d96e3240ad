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
