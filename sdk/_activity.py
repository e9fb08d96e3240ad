"""Activities: the ``activity`` decorator and what an activity sees while it runs.

An activity is a plain function ``def g(ctx: ActivityContext, input)`` (sync or async). Sync
activities run in the worker's thread pool, async ones on the worker's event loop; both get an
``ActivityContext`` whose ``heartbeat`` is safe to call from any thread.

Heartbeats are throttled here, not in the worker: at most one goes out per interval (0.8 x
the heartbeat timeout when the activity has one, otherwise one second); a heartbeat that
arrives inside the interval replaces the pending details, which go out when the interval
ends, or at the latest just before the activity's completion (``_flush``), so the engine
always records the last details an attempt reported.

Cancellation is cooperative: the worker marks the context cancelled (``activity_cancel``, or
``cancel_requested`` on a heartbeat's ack) and the next ``heartbeat()`` raises
``ActivityCancelledError``. Async activities are also cancelled through ``Task.cancel()``.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar, overload

from sdk._errors import SchedError
from sdk.protocol.limits import MAX_NAME_LENGTH

__all__ = [
    "ActivityCancelledError",
    "ActivityContext",
    "ActivityDefinition",
    "ActivityInfo",
    "CompleteAsync",
    "activity",
    "activity_definition",
]

F = TypeVar("F", bound=Callable[..., Any])

# Longest wait between two heartbeats sent for an activity without a heartbeat timeout.
DEFAULT_HEARTBEAT_INTERVAL = 1.0


class ActivityCancelledError(SchedError):
    """Raised by ``ActivityContext.heartbeat()`` once the engine cancelled the activity."""


class CompleteAsync(SchedError):
    """Raised by an activity to hand its completion to outside code: the worker sends no
    result and forgets the attempt; code holding ``ctx.info.task_token`` finishes it with
    ``client.get_async_activity_handle(task_token).complete(result)`` (or ``.fail(error)``,
    ``.heartbeat(details)``). The attempt's start-to-close and heartbeat timeouts still
    apply."""


@dataclass(frozen=True, slots=True)
class ActivityDefinition:
    """A registered activity: the name workflows schedule it by, and its function."""

    name: str
    fn: Callable[..., Any]

    @property
    def is_async(self) -> bool:
        return inspect.iscoroutinefunction(self.fn)


@overload
def activity(fn: F, /) -> F: ...


@overload
def activity(*, name: str | None = None) -> Callable[[F], F]: ...


def activity(fn: F | None = None, /, *, name: str | None = None) -> F | Callable[[F], F]:
    """Mark ``fn(ctx, input)`` as an activity named ``name`` (default: the function's name).

    Usable bare (``@activity``) or with arguments (``@activity(name="charge")``). The function
    is returned unchanged, with its definition in ``fn.__sched_activity__``.
    """

    def decorate(f: F) -> F:
        if not callable(f):
            raise TypeError("@activity decorates a function")
        activity_name = name or getattr(f, "__name__", None)
        if not activity_name or len(activity_name) > MAX_NAME_LENGTH:
            raise ValueError(f"an activity needs a name of 1 to {MAX_NAME_LENGTH} characters")
        f.__sched_activity__ = ActivityDefinition(activity_name, f)  # type: ignore[attr-defined]
        return f

    if fn is not None:
        return decorate(fn)
    return decorate


def activity_definition(obj: Any) -> ActivityDefinition:
    """The definition of a decorated activity (or an ``ActivityDefinition`` itself)."""
    if isinstance(obj, ActivityDefinition):
        return obj
    definition = getattr(obj, "__sched_activity__", None)
    if not isinstance(definition, ActivityDefinition):
        raise TypeError(f"{obj!r} is not an activity: decorate it with @sdk.activity")
    return definition


@dataclass(frozen=True, slots=True)
class ActivityInfo:
    """Which attempt of which activity is running (from the ``activity_task`` message)."""

    workflow_id: str
    run_id: str
    workflow_type: str
    activity_id: str
    activity_type: str
    task_queue: str
    attempt: int
    scheduled_at: datetime | None
    heartbeat_timeout: float | None
    start_to_close_timeout: float | None
    is_local: bool = False  # a local activity, run inside its workflow task
    # The attempt's lease token: what outside code completes it by (``CompleteAsync``).
    task_token: str = ""


def parse_timestamp(value: str) -> datetime | None:
    try:
        return datetime.fromisoformat(value)
    except (TypeError, ValueError):
        return None


class ActivityContext:
    """What an activity gets as its first argument. ``heartbeat`` works from any thread.

    Built by the worker; ``send`` is called on the worker's loop with the details to send.
    """

    def __init__(
        self,
        info: ActivityInfo,
        *,
        heartbeat_details: Any = None,
        loop: asyncio.AbstractEventLoop,
        send: Callable[[Any], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._info = info
        self._heartbeat_details = heartbeat_details
        self._loop = loop
        self._send = send
        self._clock = clock
        self._cancelled = threading.Event()
        self._lock = threading.Lock()
        self._interval = (
            0.8 * info.heartbeat_timeout
            if info.heartbeat_timeout
            else DEFAULT_HEARTBEAT_INTERVAL
        )
        self._last_sent: float | None = None
        self._pending = False
        self._pending_details: Any = None
        self._flush_scheduled = False
        self._done = False

    @property
    def info(self) -> ActivityInfo:
        return self._info

    @property
    def heartbeat_details(self) -> Any:
        """The details of the previous attempt's last heartbeat (``None`` on a first try)."""
        return self._heartbeat_details

    def is_cancelled(self) -> bool:
        return self._cancelled.is_set()

    def heartbeat(self, details: Any = None) -> None:
        """Report progress (and liveness). Raises ``ActivityCancelledError`` once cancelled."""
        if self._cancelled.is_set():
            raise ActivityCancelledError("the activity was cancelled")
        with self._lock:
            if self._done:
                return
            self._pending = True
            self._pending_details = details
            now = self._clock()
            if self._last_sent is None or now - self._last_sent >= self._interval:
                self._take_and_send_locked(now)
                return
            if self._flush_scheduled:
                return
            self._flush_scheduled = True
            delay = self._last_sent + self._interval - now
        self._loop.call_soon_threadsafe(self._loop.call_later, delay, self._timer_flush)

    # ---- worker side (called on the worker's loop) ------------------------------------

    def _take_and_send_locked(self, now: float) -> None:
        details = self._pending_details
        self._pending = False
        self._pending_details = None
        self._last_sent = now
        if self._loop_is_current():
            self._send(details)
        else:
            self._loop.call_soon_threadsafe(self._send, details)

    def _loop_is_current(self) -> bool:
        try:
            return asyncio.get_running_loop() is self._loop
        except RuntimeError:
            return False

    def _timer_flush(self) -> None:
        with self._lock:
            self._flush_scheduled = False
            if self._pending and not self._done:
                self._take_and_send_locked(self._clock())

    def _flush(self) -> None:
        """Send the pending details now and stop sending: the activity has ended."""
        with self._lock:
            if self._pending and not self._done:
                self._take_and_send_locked(self._clock())
            self._done = True

    def _cancel(self) -> None:
        self._cancelled.set()
