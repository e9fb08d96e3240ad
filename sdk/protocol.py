"""The worker protocol: JSON messages over one websocket per worker.

Every message is a JSON object with a ``type``. Messages a worker sends may carry an ``id``
(any string up to 64 characters); the engine answers each message that has one with ``ack``
or ``error`` carrying the same ``id``. Unknown fields are ignored; an unknown ``type`` or a
malformed message is answered with an ``error`` frame and changes nothing.

This module is the single place the message shapes are defined. It imports nothing from
Django: the engine's consumer and the SDK's worker both use it. docs/protocol.md documents
it for people writing workers in other languages.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar

PROTOCOL_VERSION = 1
MAX_ID_LENGTH = 64
MAX_NAME_LENGTH = 255


class ProtocolError(ValueError):
    """A frame that does not decode to a valid message. ``code`` is machine-readable."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Message:
    type: ClassVar[str] = ""

    def to_dict(self) -> dict[str, Any]:
        # Shallow on purpose: a task's events are sent as they are, not copied.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["type"] = self.type
        if out.get("id") is None:
            out.pop("id", None)
        return out

    def encode(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


# ---- worker -> engine -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """First message on a connection: what the worker serves and how much it can take."""

    type: ClassVar[str] = "hello"
    task_queue: str
    workflow_types: list[str] = field(default_factory=list)
    activity_types: list[str] = field(default_factory=list)
    max_workflow_tasks: int = 100
    max_activity_tasks: int = 100
    identity: str = ""
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Credit(Message):
    """How many tasks of each kind the worker can hold now (absolute; 0 stops delivery)."""

    type: ClassVar[str] = "credit"
    max_workflow_tasks: int
    max_activity_tasks: int
    id: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowTaskCompleted(Message):
    type: ClassVar[str] = "workflow_task_completed"
    token: str
    commands: list[dict[str, Any]]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowTaskFailedMsg(Message):
    """The worker could not run the workflow task (non-determinism, an internal error)."""

    type: ClassVar[str] = "workflow_task_failed"
    token: str
    cause: str
    failure: dict[str, Any]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityTaskCompleted(Message):
    type: ClassVar[str] = "activity_task_completed"
    token: str
    result: Any = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityTaskFailedMsg(Message):
    """An attempt failed. ``canceled`` says the activity stopped because it was canceled."""

    type: ClassVar[str] = "activity_task_failed"
    token: str
    failure: dict[str, Any]
    canceled: bool = False
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityHeartbeat(Message):
    type: ClassVar[str] = "activity_heartbeat"
    token: str
    details: Any = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRequest(Message):
    """The worker holds a task with only new events but has not cached the run: send all."""

    type: ClassVar[str] = "history_request"
    token: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """Keeps the worker's leases alive; sent every ``heartbeat_interval`` seconds."""

    type: ClassVar[str] = "ping"
    id: str | None = None


# ---- engine -> worker -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    type: ClassVar[str] = "welcome"
    worker_id: str
    heartbeat_interval: float
    protocol_version: int = PROTOCOL_VERSION


@dataclass(frozen=True, slots=True)
class WorkflowTask(Message):
    """A workflow task. ``events`` starts at ``first_event_id``: 1 for the whole history,
    later for a sticky task that carries only what the worker has not seen."""

    type: ClassVar[str] = "workflow_task"
    token: str
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    attempt: int
    first_event_id: int
    events: list[dict[str, Any]]
    # The W3C trace context of the request that started the run (tracing on), or None.
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityTask(Message):
    type: ClassVar[str] = "activity_task"
    token: str
    workflow_id: str
    run_id: str
    workflow_type: str
    activity_id: str
    activity_type: str
    task_queue: str
    attempt: int
    scheduled_at: str
    input: Any = None
    heartbeat_details: Any = None
    heartbeat_timeout: float | None = None
    start_to_close_timeout: float | None = None
    traceparent: str | None = None


@dataclass(frozen=True, slots=True)
class History(Message):
    """Answer to ``history_request``: the run's whole history up to the task."""

    type: ClassVar[str] = "history"
    token: str
    events: list[dict[str, Any]]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityCancel(Message):
    """The engine canceled an activity the worker holds; it sees it at its next heartbeat."""

    type: ClassVar[str] = "activity_cancel"
    token: str


@dataclass(frozen=True, slots=True)
class Ack(Message):
    type: ClassVar[str] = "ack"
    id: str
    cancel_requested: bool | None = None


@dataclass(frozen=True, slots=True)
class Error(Message):
    type: ClassVar[str] = "error"
    code: str
    message: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Pong(Message):
    type: ClassVar[str] = "pong"
    id: str | None = None


WORKER_MESSAGES: dict[str, type[Message]] = {
    m.type: m
    for m in (Hello, Credit, WorkflowTaskCompleted, WorkflowTaskFailedMsg, ActivityTaskCompleted,
              ActivityTaskFailedMsg, ActivityHeartbeat, HistoryRequest, Ping)
}
ENGINE_MESSAGES: dict[str, type[Message]] = {
    m.type: m
    for m in (Welcome, WorkflowTask, ActivityTask, History, ActivityCancel, Ack, Error, Pong)
}

_JSON_TYPES: dict[str, tuple[type, ...]] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "list[str]": (list,), "list[dict[str, Any]]": (list,), "dict[str, Any]": (dict,),
}


def _check(cls: type[Message], raw: Mapping[str, Any], request_id: str | None) -> Message:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        annotation = str(f.type)
        optional = annotation.endswith("| None") or annotation == "Any"
        has_default = f.default is not f.default_factory  # either one is set
        if f.name not in raw:
            if optional or has_default:
                continue
            raise ProtocolError("invalid_message", f"{cls.type}: missing field {f.name!r}",
                                request_id)
        value = raw[f.name]
        base = annotation.removesuffix(" | None")
        expected = _JSON_TYPES.get(base)
        if value is None and optional:
            kwargs[f.name] = None
            continue
        if expected is not None and (
            not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)
        ):
            raise ProtocolError("invalid_message", f"{cls.type}: {f.name!r} must be {base}",
                                request_id)
        if base == "list[str]" and not all(
            isinstance(v, str) and 0 < len(v) <= MAX_NAME_LENGTH for v in value
        ):
            raise ProtocolError("invalid_message", f"{cls.type}: {f.name!r} must hold names",
                                request_id)
        if base == "int" and not 0 <= value <= 2**31 - 1:
            raise ProtocolError("invalid_message", f"{cls.type}: {f.name!r} is out of range",
                                request_id)
        if base == "str" and len(value) > (MAX_NAME_LENGTH if f.name != "message" else 65_536):
            raise ProtocolError("invalid_message", f"{cls.type}: {f.name!r} is too long",
                                request_id)
        kwargs[f.name] = value
    return cls(**kwargs)


def decode(frame: str | bytes, registry: Mapping[str, type[Message]]) -> Message:
    """Decode one frame into a message of ``registry`` or raise ``ProtocolError``."""
    try:
        raw = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("malformed_json", f"the frame is not JSON: {exc}") from None
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_message", "a message must be a JSON object")
    request_id = raw.get("id")
    if request_id is not None and (
        not isinstance(request_id, str) or len(request_id) > MAX_ID_LENGTH
    ):
        raise ProtocolError("invalid_message", f"id must be a string of at most {MAX_ID_LENGTH}")
    kind = raw.get("type")
    cls = registry.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError("unknown_type", f"unknown message type: {str(kind)[:64]!r}",
                            request_id)
    return _check(cls, raw, request_id)


def decode_worker_message(frame: str | bytes) -> Message:
    return decode(frame, WORKER_MESSAGES)


def decode_engine_message(frame: str | bytes) -> Message:
    return decode(frame, ENGINE_MESSAGES)
