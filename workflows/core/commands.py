"""Commands, as the core sees them: what a workflow task asks the engine to do.

The definitions are the wire contract's (``sdk.protocol.commands``), so the engine parses
exactly the types the SDK builds: a worker's ``commands`` become typed, validated dataclasses
through ``parse_commands`` (or ``InvalidCommand``), and ``decide`` turns each into events. This
module names what the core uses of the contract, so services and ``decide`` import commands
from the core and the core alone depends on the protocol's layout.
"""

from __future__ import annotations

from sdk.protocol.commands import (
    PARENT_CLOSE_POLICIES,
    TERMINAL_COMMANDS,
    CancelTimer,
    CancelWorkflow,
    Command,
    CompleteUpdate,
    CompleteWorkflow,
    ContinueAsNew,
    FailWorkflow,
    InvalidCommand,
    RecordMarker,
    RequestCancelActivity,
    RequestCancelExternalWorkflow,
    RetryPolicy,
    ScheduleActivity,
    SignalExternalWorkflow,
    StartChildWorkflow,
    StartTimer,
    parse_command,
    parse_commands,
)
from sdk.protocol.failures import normalize_failure
from sdk.protocol.limits import MAX_DURATION_MS, MAX_NAME_LENGTH

__all__ = [
    "MAX_DURATION_MS",
    "MAX_NAME_LENGTH",
    "PARENT_CLOSE_POLICIES",
    "TERMINAL_COMMANDS",
    "CancelTimer",
    "CancelWorkflow",
    "Command",
    "CompleteUpdate",
    "CompleteWorkflow",
    "ContinueAsNew",
    "FailWorkflow",
    "InvalidCommand",
    "RecordMarker",
    "RequestCancelActivity",
    "RequestCancelExternalWorkflow",
    "RetryPolicy",
    "ScheduleActivity",
    "SignalExternalWorkflow",
    "StartChildWorkflow",
    "StartTimer",
    "normalize_failure",
    "parse_command",
    "parse_commands",
]
