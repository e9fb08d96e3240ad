"""Frames: the JSON messages of the worker protocol, one websocket per worker.

Every frame is a JSON object with a ``type``. Frames a worker sends may carry an ``id`` (a
string of at most ``MAX_REQUEST_ID_LENGTH`` characters); the engine answers each frame that has
one with ``ack`` or ``error`` carrying the same ``id``. Unknown fields are ignored; an unknown
``type`` or a malformed frame is answered with an ``error`` frame and changes nothing. String
fields holding what no database stores (NUL, a lone surrogate) are malformed here; payloads
are checked apart (``payload_problem_of``), so that the engine can fail the frame's task.

This module owns the frame classes and their decoding (``decode_worker_message`` on the
engine's side, ``decode_engine_message`` on the worker's). A frame's fields are checked
against their annotations, so the annotations are part of the contract: they use the names of
``sdk.protocol.payloads`` for JSON, and docs/protocol.md's tables are generated from them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import MISSING, Field, dataclass, field, fields
from typing import Any, ClassVar

from sdk.protocol.failures import WireFailure
from sdk.protocol.limits import (
    MAX_COUNT,
    MAX_ERROR_MESSAGE_LENGTH,
    MAX_JSON_DEPTH,
    MAX_NAME_LENGTH,
    MAX_REQUEST_ID_LENGTH,
)
from sdk.protocol.names import INVALID_NAME, name_problem
from sdk.protocol.payloads import (
    JSONObject,
    JSONValue,
    WireCommand,
    WireEvent,
    payload_problem,
    text_problem,
)

PROTOCOL_VERSION = 1


class ProtocolError(ValueError):
    """A frame that does not decode to a valid message. ``code`` is machine-readable."""

    def __init__(self, code: str, message: str, request_id: str | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.request_id = request_id


# Optional fields left out of a frame when they hold nothing (the others are sent as null).
_OMITTED_WHEN_NONE = ("ack", "ack_events", "events", "workflow_task")


@dataclass(frozen=True, slots=True)
class Message:
    """A frame; ``type`` is its JSON ``type``."""

    type: ClassVar[str] = ""

    def to_dict(self) -> JSONObject:
        # Shallow on purpose: a task's events are sent as they are, not copied.
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["type"] = self.type
        if out.get("id") is None:
            out.pop("id", None)
        for name in _OMITTED_WHEN_NONE:
            if name in out and out[name] is None:
                del out[name]
        return out

    def encode(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"))


# ---- worker -> engine -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """The first frame: what the worker serves and how many tasks of each kind it can hold.

    A worker reconnecting names its last session (``resume_worker_id``, the ``worker_id`` of
    its last ``welcome``) and the tokens of the leases it still holds (``resume_tokens``:
    running activities, results not yet acknowledged): those leases move to the new
    session if they are still current."""

    type: ClassVar[str] = "hello"
    task_queue: str
    workflow_types: list[str] = field(default_factory=list)
    activity_types: list[str] = field(default_factory=list)
    max_workflow_tasks: int = 100
    max_activity_tasks: int = 100
    identity: str = ""
    resume_worker_id: str = ""
    resume_tokens: list[str] = field(default_factory=list)
    # The worker takes the ``ack`` of a completion on the task frame sent with it (the
    # run's next task), instead of a frame of its own.
    acks_on_tasks: bool = False
    # The worker runs a run's next workflow task on an activity's result when it caches the
    # run (``activity_task_completed``'s ``workflow_task``), and takes the events a
    # completion appended on its ``ack`` (``ack``'s ``events``, ``activity_task``'s
    # ``ack_events``).
    eager_workflow_tasks: bool = False
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Credit(Message):
    """New capacity (absolute); ``0``/``0`` stops delivery, e.g. while shutting down."""

    type: ClassVar[str] = "credit"
    max_workflow_tasks: int
    max_activity_tasks: int
    id: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowTaskCompleted(Message):
    """The workflow task ran; ``commands`` are its new commands."""

    type: ClassVar[str] = "workflow_task_completed"
    token: str
    commands: list[WireCommand]
    id: str | None = None


@dataclass(frozen=True, slots=True)
class WorkflowTaskFailedMsg(Message):
    """The workflow task could not run (``cause``: ``workflow_error``, ``deadlock_detected``,
    ``nondeterminism``, ... as listed below); it is retried with back-off."""

    type: ClassVar[str] = "workflow_task_failed"
    token: str
    cause: str
    failure: WireFailure
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityTaskCompleted(Message):
    """The activity attempt succeeded with ``result``.

    ``workflow_task`` (a worker and an engine that both said ``eager_workflow_tasks``): the
    run's next workflow task, which the worker ran on this result because it caches the run
    and had seen all of its history: ``first_event_id`` (the id it expects the activity's
    ``ActivityTaskStarted`` to get), ``started_at`` (the task's start, the workflow's time
    during it, an ISO 8601 timestamp) and ``commands``. The engine records the completion and
    that task (started and completed) in one transaction when the run is as the worker saw
    it; otherwise it records the completion alone and schedules the task as usual, and the
    ``ack`` carries no ``events`` (the worker drops what it ran)."""

    type: ClassVar[str] = "activity_task_completed"
    token: str
    result: JSONValue = None
    workflow_task: JSONObject | None = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityTaskFailedMsg(Message):
    """An activity attempt failed (retried per its retry policy), or stopped because it was
    canceled (``canceled``)."""

    type: ClassVar[str] = "activity_task_failed"
    token: str
    failure: WireFailure
    canceled: bool = False
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityTaskAsync(Message):
    """The activity raised ``CompleteAsync``: outside code completes it by its token (REST
    ``/api/activities/{token}/...``); the worker no longer holds the lease, which no
    disconnect hands back (its start-to-close and heartbeat timeouts still apply)."""

    type: ClassVar[str] = "activity_task_async"
    token: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityHeartbeat(Message):
    """An activity's progress; the ``ack`` says ``cancel_requested``."""

    type: ClassVar[str] = "activity_heartbeat"
    token: str
    details: JSONValue = None
    id: str | None = None


@dataclass(frozen=True, slots=True)
class HistoryRequest(Message):
    """The worker holds a workflow task but does not cache the run: send its history from
    ``first_event_id``, one page (``history``) at a time."""

    type: ClassVar[str] = "history_request"
    token: str
    first_event_id: int = 1
    id: str | None = None


@dataclass(frozen=True, slots=True)
class QueryResult(Message):
    """The answer to the ``query_task`` of ``token``: the handler's ``result``, or (``error``
    set) why there is none: ``query_not_found`` (the workflow set no handler of that name),
    ``query_failed`` (the handler raised, issued a command, or the run could not be
    replayed; ``message`` says which), ``unknown_workflow_type`` (this worker does not serve
    the run's type)."""

    type: ClassVar[str] = "query_result"
    token: str
    result: JSONValue = None
    error: str | None = None
    message: str = ""
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """Sent every ``heartbeat_interval`` seconds; keeps the worker's activity leases alive."""

    type: ClassVar[str] = "ping"
    id: str | None = None


# ---- engine -> worker -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Welcome(Message):
    """The answer to ``hello``."""

    type: ClassVar[str] = "welcome"
    worker_id: str
    heartbeat_interval: float
    protocol_version: int = PROTOCOL_VERSION
    # The largest frame the engine takes (``SCHED_MAX_PAYLOAD_BYTES``, UTF-8 bytes); a worker
    # fails an item whose frame would be larger with ``payload_too_large`` instead of sending it.
    max_payload_bytes: int | None = None
    # The engine takes ``activity_task_completed``'s ``workflow_task`` (see ``hello``).
    eager_workflow_tasks: bool = False


@dataclass(frozen=True, slots=True)
class WorkflowTask(Message):
    """Run the workflow: ``events`` go from ``first_event_id`` (1: the whole history; more:
    only what this worker has not seen, because it ran the run's last task, or only the last
    event of a history too long for one frame, which a worker that does not cache the run
    asks for with ``history_request``) through the task's ``WorkflowTaskStarted``."""

    type: ClassVar[str] = "workflow_task"
    token: str
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    attempt: int
    first_event_id: int
    events: list[WireEvent]
    # The W3C trace context of the request that started the run (tracing on), or None.
    traceparent: str | None = None
    # The run's whole history through this task: its events, and about its bytes.
    history_length: int = 0
    history_size_bytes: int = 0
    # The ``id`` of the worker's frame this one also answers with ``ack`` (a worker that said
    # ``acks_on_tasks``: the completion that handed it this task).
    ack: str | None = None


@dataclass(frozen=True, slots=True)
class ActivityTask(Message):
    """Run one attempt of an activity; ``heartbeat_details`` are the last ones the previous
    attempt sent."""

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
    input: JSONValue = None
    heartbeat_details: JSONValue = None
    heartbeat_timeout: float | None = None
    start_to_close_timeout: float | None = None
    traceparent: str | None = None
    # As ``workflow_task``'s ``ack``.
    ack: str | None = None
    # The events the acknowledged completion appended (as ``ack``'s ``events``).
    ack_events: list[WireEvent] | None = None


@dataclass(frozen=True, slots=True)
class History(Message):
    """The answer to ``history_request``: one page of the run's history up to the task (at
    most ``HISTORY_PAGE_EVENTS`` events, about ``HISTORY_PAGE_BYTES``). ``more``: later
    events follow; ask again from the event after this page's last."""

    type: ClassVar[str] = "history"
    token: str
    events: list[WireEvent]
    more: bool = False
    id: str | None = None


@dataclass(frozen=True, slots=True)
class QueryTask(Message):
    """Answer a query against the run: call its handler ``query_name`` with ``args`` and send
    ``query_result`` with the same ``token``. The run's state is its history through event
    ``history_length`` (a running run's task in flight excluded); ``events`` are its first
    events, possibly none (when the engine expects the worker to cache the run): a worker
    that needs the rest asks for them with ``history_request`` under this ``token``, page by
    page. A query changes nothing: its handler must issue no command."""

    type: ClassVar[str] = "query_task"
    token: str
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    query_name: str
    args: list[JSONValue]
    history_length: int
    events: list[WireEvent] = field(default_factory=list)
    # The event after the last workflow task this worker ran for the run, as the engine
    # knows it (0: none): a cached instance that expects this event id is current.
    sticky_next_event_id: int = 0
    # Not a query: run the validator of the update handler ``query_name`` with ``args``
    # (``result`` null if it accepts; ``error`` ``update_rejected`` if it raised,
    # ``update_not_found`` if the workflow set no such handler, ``not_run_yet`` if no
    # workflow task of the run has completed yet).
    update_validation: bool = False


@dataclass(frozen=True, slots=True)
class ActivityCancel(Message):
    """The activity was canceled; the worker raises it at the activity's next heartbeat."""

    type: ClassVar[str] = "activity_cancel"
    token: str


@dataclass(frozen=True, slots=True)
class Ack(Message):
    """The frame ``id`` was applied.

    ``events`` (a worker that said ``eager_workflow_tasks``): the acknowledged frame completed
    a workflow task of a run this worker stays sticky for, and these are the events it
    appended after the task's ``WorkflowTaskStarted``; the run's next workflow task sent to
    this worker starts after them."""

    type: ClassVar[str] = "ack"
    id: str
    cancel_requested: bool | None = None
    events: list[WireEvent] | None = None


@dataclass(frozen=True, slots=True)
class Error(Message):
    """The frame ``id`` (or an unnamed one) was refused; ``code`` says why."""

    type: ClassVar[str] = "error"
    code: str
    message: str
    id: str | None = None


@dataclass(frozen=True, slots=True)
class Pong(Message):
    """The answer to ``ping``."""

    type: ClassVar[str] = "pong"
    id: str | None = None


WORKER_MESSAGES: dict[str, type[Message]] = {
    m.type: m
    for m in (Hello, Credit, WorkflowTaskCompleted, WorkflowTaskFailedMsg, ActivityTaskCompleted,
              ActivityTaskFailedMsg, ActivityTaskAsync, ActivityHeartbeat, HistoryRequest,
              QueryResult, Ping)
}
ENGINE_MESSAGES: dict[str, type[Message]] = {
    m.type: m
    for m in (Welcome, WorkflowTask, ActivityTask, History, QueryTask, ActivityCancel, Ack,
              Error, Pong)
}

# What a field's annotation accepts, by its annotation without ``| None``. A field that may
# be None (or holds any JSON value) may also be absent.
_JSON_TYPES: dict[str, tuple[type, ...] | None] = {
    "str": (str,), "int": (int,), "float": (int, float), "bool": (bool,),
    "list[str]": (list,), "list[WireCommand]": (list,), "list[WireEvent]": (list,),
    "list[JSONValue]": (list,),
    "JSONObject": (dict,), "WireFailure": (dict,), "JSONValue": None,
}


def _has_default(f: Field[Any]) -> bool:
    return f.default is not MISSING or f.default_factory is not MISSING


# Fields that name something (checked with ``sdk.protocol.names``, as the REST API does).
_NAME_FIELDS: dict[type[Message], frozenset[str]] = {
    Hello: frozenset({"task_queue", "workflow_types", "activity_types"}),
}


def _check(cls: type[Message], raw: Mapping[str, Any], request_id: str | None) -> Message:
    kwargs: dict[str, Any] = {}
    for f in fields(cls):
        annotation = str(f.type)
        base = annotation.removesuffix(" | None")
        expected = _JSON_TYPES[base]
        optional = base != annotation or expected is None
        if f.name not in raw:
            if optional or _has_default(f):
                continue
            raise ProtocolError("invalid_message", f"{cls.type}: missing field {f.name!r}",
                                request_id)
        value = raw[f.name]
        if value is None and optional:
            kwargs[f.name] = None
            continue
        if expected is not None and (
            not isinstance(value, expected) or (isinstance(value, bool) and bool not in expected)
        ):
            raise ProtocolError("invalid_message", f"{cls.type}: {f.name!r} must be {base}",
                                request_id)
        if base == "list[str]" and not all(isinstance(v, str) for v in value):
            raise ProtocolError("invalid_message", f"{cls.type}: {f.name!r} must hold names",
                                request_id)
        if f.name in _NAME_FIELDS.get(cls, ()):
            for name in value if base == "list[str]" else [value]:
                problem = name_problem(name)
                if problem is not None:
                    raise ProtocolError(INVALID_NAME, f"{cls.type}: {f.name!r} {problem}",
                                        request_id)
        if base == "int" and not 0 <= value <= MAX_COUNT:
            raise ProtocolError("invalid_message", f"{cls.type}: {f.name!r} is out of range",
                                request_id)
        if base == "str" and len(value) > _max_length(f.name):
            raise ProtocolError("invalid_message", f"{cls.type}: {f.name!r} is too long",
                                request_id)
        if base == "str" and f.name != "id" and (problem := text_problem(value)):
            raise ProtocolError("invalid_message", f"{cls.type}: {f.name!r} {problem}",
                                request_id)
        kwargs[f.name] = value
    return cls(**kwargs)


def _max_length(name: str) -> int:
    return MAX_ERROR_MESSAGE_LENGTH if name == "message" else MAX_NAME_LENGTH


def decode(frame: str | bytes, registry: Mapping[str, type[Message]]) -> Message:
    """Decode one frame into a message of ``registry`` or raise ``ProtocolError``."""
    try:
        raw = json.loads(frame)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError("malformed_json", f"the frame is not JSON: {exc}") from None
    except RecursionError:
        raise ProtocolError("malformed_json", "the frame is nested too deeply to decode "
                            f"(payloads nest at most {MAX_JSON_DEPTH} levels)") from None
    if not isinstance(raw, dict):
        raise ProtocolError("invalid_message", "a message must be a JSON object")
    request_id = raw.get("id")
    if request_id is not None and (
        not isinstance(request_id, str) or len(request_id) > MAX_REQUEST_ID_LENGTH
    ):
        raise ProtocolError("invalid_message",
                            f"id must be a string of at most {MAX_REQUEST_ID_LENGTH}")
    kind = raw.get("type")
    cls = registry.get(kind) if isinstance(kind, str) else None
    if cls is None:
        raise ProtocolError("unknown_type", f"unknown message type: {str(kind)[:64]!r}",
                            request_id)
    return _check(cls, raw, request_id)


_PAYLOAD_TYPES = frozenset({"JSONValue", "JSONObject", "WireFailure", "list[WireCommand]",
                            "list[WireEvent]", "list[JSONValue]"})


def payload_problem_of(message: Message) -> str | None:
    """Why a payload a decoded frame carries (a result, commands, a failure, details) cannot
    be stored, or None: the check of ``sdk.protocol.payloads.payload_problem``."""
    for f in fields(message):
        if f.name == "workflow_task":
            continue  # a proposal: the engine checks it, and ignores it if it is unfit
        if str(f.type).removesuffix(" | None") in _PAYLOAD_TYPES:
            problem = payload_problem(getattr(message, f.name))
            if problem:
                return f"{message.type}: {f.name!r}: {problem}"
    return None


def frame_size(frame: str | bytes) -> int:
    """A frame's size in bytes, as the limits count it (UTF-8)."""
    if isinstance(frame, bytes):
        return len(frame)
    return len(frame.encode("utf-8", "surrogatepass"))


def decode_worker_message(frame: str | bytes) -> Message:
    """A frame a worker sent (the engine's side)."""
    return decode(frame, WORKER_MESSAGES)


def decode_engine_message(frame: str | bytes) -> Message:
    """A frame the engine sent (the worker's side)."""
    return decode(frame, ENGINE_MESSAGES)
