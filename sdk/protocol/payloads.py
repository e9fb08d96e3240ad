"""Names for the JSON the protocol carries, so signatures say what a value is.

These are aliases, not checks: a payload is whatever ``json.loads`` returns, and each frame,
command and event says which of them its fields hold.
"""

from __future__ import annotations

from typing import Any, TypeAlias

JSONValue: TypeAlias = Any
"""Any JSON value: a workflow's input and result, an activity's, a marker's data, details."""

JSONObject: TypeAlias = dict[str, Any]
"""A JSON object."""

WireEvent: TypeAlias = dict[str, Any]
"""A history event as sent to workers: ``{"event_id", "event_type", "timestamp",
"attributes"}`` (``workflows.core.events.Event.to_wire``)."""

WireCommand: TypeAlias = dict[str, Any]
"""A command as sent by workers: a JSON object with a ``kind`` (``encode_command``)."""
