"""History events, as the core stores them.

The vocabulary (``EventType``, the attributes each type carries, which events close a run and
which give it input) is the wire contract's, ``sdk.protocol.events``: workers read the same
names the engine writes. What belongs to the engine is the stored event: its dense id within
the run, its timestamp, and the form it is sent to workers in.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sdk.protocol.events import (
    ATTRIBUTE_SHAPES,
    CHILD_CLOSED_EVENTS,
    CLOSING_EVENTS,
    INPUT_EVENTS,
    EventType,
)
from sdk.protocol.payloads import JSONObject, WireEvent

__all__ = [
    "ATTRIBUTE_SHAPES", "CHILD_CLOSED_EVENTS", "CLOSING_EVENTS", "INPUT_EVENTS", "Event",
    "EventType",
]


@dataclass(frozen=True, slots=True)
class Event:
    """A stored history event: dense ``event_id`` from 1 within its run."""

    event_id: int
    event_type: EventType
    timestamp: datetime
    attributes: JSONObject

    def to_wire(self) -> WireEvent:
        return {
            "event_id": self.event_id,
            "event_type": self.event_type.value,
            "timestamp": self.timestamp.isoformat(),
            "attributes": self.attributes,
        }
