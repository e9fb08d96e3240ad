"""sched's wire contract: what workers and the engine say to each other, defined once.

Stdlib only, and nothing of the engine or the rest of the SDK: the engine (its consumer, its
core, its models and forms) and the SDK's worker and runtime import these definitions, and
docs/protocol.md's tables are generated from them (``python -m sdk.protocol.docs``).

* ``frames``: the websocket messages and their decoding.
* ``commands``: the commands a workflow task completes with, parsed and encoded.
* ``events``: history event types and the attributes each one carries.
* ``failures``: the failure shape and its normalization.
* ``limits``: every length and range the protocol enforces.
* ``payloads``: names for the JSON values the others carry.
* ``docs``: renders docs/protocol.md's tables from the above.
"""

from __future__ import annotations

from sdk.protocol.commands import (
    COMMAND_CLASSES,
    DEFAULT_RETRY_POLICY,
    LOCAL_ACTIVITY_MARKER,
    TERMINAL_COMMANDS,
    TERMINAL_KINDS,
    CancelTimer,
    CancelWorkflow,
    Command,
    CompleteWorkflow,
    ContinueAsNew,
    FailWorkflow,
    InvalidCommand,
    RecordMarker,
    RequestCancelActivity,
    RetryPolicy,
    ScheduleActivity,
    StartTimer,
    encode_command,
    encode_commands,
    kind_of,
    parse_command,
    parse_commands,
)
from sdk.protocol.events import ATTRIBUTE_SHAPES, CLOSING_EVENTS, INPUT_EVENTS, EventType
from sdk.protocol.failures import (
    WORKFLOW_TASK_FAILURE_CAUSES,
    Failure,
    WireFailure,
    normalize_failure,
)
from sdk.protocol.frames import (
    ENGINE_MESSAGES,
    PROTOCOL_VERSION,
    WORKER_MESSAGES,
    Ack,
    ActivityCancel,
    ActivityHeartbeat,
    ActivityTask,
    ActivityTaskCompleted,
    ActivityTaskFailedMsg,
    Credit,
    Error,
    Hello,
    History,
    HistoryRequest,
    Message,
    Ping,
    Pong,
    ProtocolError,
    Welcome,
    WorkflowTask,
    WorkflowTaskCompleted,
    WorkflowTaskFailedMsg,
    decode,
    decode_engine_message,
    decode_worker_message,
)
from sdk.protocol.limits import (
    MAX_DURATION_MS,
    MAX_NAME_LENGTH,
    MAX_REQUEST_ID_LENGTH,
    MAX_SEQ,
    MAX_WORKFLOW_ID_LENGTH,
    MIN_SEQ,
)
from sdk.protocol.payloads import JSONObject, JSONValue, WireCommand, WireEvent

__all__ = [
    "ATTRIBUTE_SHAPES",
    "CLOSING_EVENTS",
    "COMMAND_CLASSES",
    "DEFAULT_RETRY_POLICY",
    "ENGINE_MESSAGES",
    "INPUT_EVENTS",
    "LOCAL_ACTIVITY_MARKER",
    "MAX_DURATION_MS",
    "MAX_NAME_LENGTH",
    "MAX_REQUEST_ID_LENGTH",
    "MAX_SEQ",
    "MAX_WORKFLOW_ID_LENGTH",
    "MIN_SEQ",
    "PROTOCOL_VERSION",
    "TERMINAL_COMMANDS",
    "TERMINAL_KINDS",
    "WORKER_MESSAGES",
    "WORKFLOW_TASK_FAILURE_CAUSES",
    "Ack",
    "ActivityCancel",
    "ActivityHeartbeat",
    "ActivityTask",
    "ActivityTaskCompleted",
    "ActivityTaskFailedMsg",
    "CancelTimer",
    "CancelWorkflow",
    "Command",
    "CompleteWorkflow",
    "ContinueAsNew",
    "Credit",
    "Error",
    "EventType",
    "FailWorkflow",
    "Failure",
    "Hello",
    "History",
    "HistoryRequest",
    "InvalidCommand",
    "JSONObject",
    "JSONValue",
    "Message",
    "Ping",
    "Pong",
    "ProtocolError",
    "RecordMarker",
    "RequestCancelActivity",
    "RetryPolicy",
    "ScheduleActivity",
    "StartTimer",
    "Welcome",
    "WireCommand",
    "WireEvent",
    "WireFailure",
    "WorkflowTask",
    "WorkflowTaskCompleted",
    "WorkflowTaskFailedMsg",
    "decode",
    "decode_engine_message",
    "decode_worker_message",
    "encode_command",
    "encode_commands",
    "kind_of",
    "normalize_failure",
    "parse_command",
    "parse_commands",
]
