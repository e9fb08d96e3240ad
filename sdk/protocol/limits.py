"""The protocol's limits: every length, range and size the engine and the SDK enforce.

Defined once here and imported by the frame decoder, the command parser, the failure
normalizer, the SDK's argument checks, the engine's models, REST serializers and dashboard
forms, so a name the SDK accepts is one the engine stores. ``LIMITS`` describes each one for
the generated table in docs/protocol.md.
"""

from __future__ import annotations

import json
from typing import Any, Final

MAX_NAME_LENGTH: Final = 255
"""Workflow, activity, signal and marker names, task queues, identities, and the string
fields of frames but an error's ``message`` (characters)."""

MAX_WORKFLOW_ID_LENGTH: Final = 255
"""A workflow id, chosen by the caller or generated (characters)."""

MAX_REQUEST_ID_LENGTH: Final = 64
"""The ``id`` a worker puts on a frame to have it acknowledged, and the ``request_id`` of a
REST start or signal (characters)."""

MAX_UPDATE_ID_LENGTH: Final = 255
"""An update's ``update_id``, chosen by the caller or drawn by the client (characters)."""

MAX_ERROR_MESSAGE_LENGTH: Final = 65_536
"""The ``message`` of an ``error`` frame (characters)."""

MAX_COUNT: Final = 2**31 - 1
"""Integer fields of frames (credit, attempts, event ids) are in ``0..MAX_COUNT``."""

MAX_JSON_DEPTH: Final = 64
"""How deep a payload (an input, a result, details, a failure) may nest arrays and objects."""

MIN_SEQ: Final = 1
MAX_SEQ: Final = 2**31 - 1
"""A command's ``seq`` is in ``MIN_SEQ..MAX_SEQ``."""

MAX_DURATION_MS: Final = 100 * 365 * 24 * 3600 * 1000
"""The longest duration a command may carry (timers, timeouts, retry intervals): a century."""

MIN_BACKOFF_COEFFICIENT: Final = 1.0
MAX_BACKOFF_COEFFICIENT: Final = 100.0
"""A retry policy's ``backoff_coefficient`` is in this range."""

MAX_FAILURE_TYPE_LENGTH: Final = MAX_NAME_LENGTH
MAX_FAILURE_MESSAGE_LENGTH: Final = 32_768
MAX_FAILURE_STACK_LENGTH: Final = 65_536
"""A failure's ``type``, ``message`` and ``stack`` are clipped to these lengths."""

MAX_FAILURE_CAUSE_DEPTH: Final = 8
"""How many failures a ``cause`` chain holds below the outermost one (deeper ones are cut)."""

HISTORY_PAGE_EVENTS: Final = 1_000
HISTORY_PAGE_BYTES: Final = 512 * 1024
"""A ``history`` frame holds at most this many events and about this many bytes of them (one
event more than the bytes, if a single event is larger); the worker asks for the next page.
A ``workflow_task`` whose whole history would not fit one page carries only its last event,
and the worker, which does not cache the run, asks for the history page by page."""

HISTORY_WARN_EVENTS: Final = 10_000
HISTORY_WARN_BYTES: Final = 10 * 1024 * 1024
"""Past either, the worker logs a warning and ``is_continue_as_new_suggested()`` is true."""

MAX_HISTORY_EVENTS: Final = 50_000
MAX_HISTORY_BYTES: Final = 50 * 1024 * 1024
"""A run whose history passes either fails with the cause ``history_too_large``."""


def event_bytes(attributes: Any) -> int:
    """What one event counts towards a history's bytes: its attributes as compact JSON, and
    64 for the rest (the engine's ``history_size_bytes``, which ``MAX_HISTORY_BYTES`` bounds;
    the worker's count between the tasks that bring the engine's)."""
    return len(json.dumps(attributes, separators=(",", ":"))) + 64

# (constant, value, what it bounds), in the order docs/protocol.md lists them.
LIMITS: Final[tuple[tuple[str, int | float, str], ...]] = (
    ("MAX_NAME_LENGTH", MAX_NAME_LENGTH,
     "characters in a workflow, activity, signal or marker name, a task queue, an identity, "
     "and any string field of a frame but an `error`'s `message`"),
    ("MAX_WORKFLOW_ID_LENGTH", MAX_WORKFLOW_ID_LENGTH, "characters in a workflow id"),
    ("MAX_REQUEST_ID_LENGTH", MAX_REQUEST_ID_LENGTH,
     "characters in a frame's `id` and in a REST request's `request_id`"),
    ("MAX_UPDATE_ID_LENGTH", MAX_UPDATE_ID_LENGTH, "characters in an update's `update_id`"),
    ("MAX_ERROR_MESSAGE_LENGTH", MAX_ERROR_MESSAGE_LENGTH,
     "characters in an `error` frame's `message`"),
    ("MAX_COUNT", MAX_COUNT, "largest value of a frame's integer field (smallest: 0)"),
    ("MAX_JSON_DEPTH", MAX_JSON_DEPTH,
     "levels of arrays and objects a payload may nest (a frame nested deeper is refused)"),
    ("MIN_SEQ", MIN_SEQ, "smallest `seq` of a command"),
    ("MAX_SEQ", MAX_SEQ, "largest `seq` of a command"),
    ("MAX_DURATION_MS", MAX_DURATION_MS,
     "longest duration in a command or retry policy (ms; a century)"),
    ("MIN_BACKOFF_COEFFICIENT", MIN_BACKOFF_COEFFICIENT, "smallest `backoff_coefficient`"),
    ("MAX_BACKOFF_COEFFICIENT", MAX_BACKOFF_COEFFICIENT, "largest `backoff_coefficient`"),
    ("MAX_FAILURE_TYPE_LENGTH", MAX_FAILURE_TYPE_LENGTH,
     "a failure's `type` is clipped to this many characters"),
    ("MAX_FAILURE_MESSAGE_LENGTH", MAX_FAILURE_MESSAGE_LENGTH,
     "a failure's `message` is clipped to this many characters"),
    ("MAX_FAILURE_STACK_LENGTH", MAX_FAILURE_STACK_LENGTH,
     "a failure's `stack` is clipped to this many characters"),
    ("MAX_FAILURE_CAUSE_DEPTH", MAX_FAILURE_CAUSE_DEPTH,
     "failures a `cause` chain keeps below the outermost one (deeper causes are cut)"),
    ("HISTORY_PAGE_EVENTS", HISTORY_PAGE_EVENTS, "events in one `history` frame"),
    ("HISTORY_PAGE_BYTES", HISTORY_PAGE_BYTES,
     "bytes of events in one `history` frame (one event more if it alone is larger)"),
    ("HISTORY_WARN_EVENTS", HISTORY_WARN_EVENTS,
     "events in a history past which the worker warns and suggests continue-as-new"),
    ("HISTORY_WARN_BYTES", HISTORY_WARN_BYTES,
     "bytes of history past which the worker warns and suggests continue-as-new"),
    ("MAX_HISTORY_EVENTS", MAX_HISTORY_EVENTS,
     "events in a history past which the run fails (`history_too_large`)"),
    ("MAX_HISTORY_BYTES", MAX_HISTORY_BYTES,
     "bytes of history past which the run fails (`history_too_large`)"),
)
