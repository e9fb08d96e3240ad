"""What workflow code sees: the ``workflow`` decorator and ``WorkflowContext``.

A workflow is ``async def fn(ctx: WorkflowContext, input)``. Everything it may do that is not
pure computation goes through ``ctx``: durable calls (activities, timers, signals, side effects)
become commands with a sequence number, and time, randomness and ids come from the history so a
replay sees exactly what the first run saw. The context is a thin, argument-checking facade;
the deterministic machinery behind it lives in ``sdk._runtime``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import random
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Protocol, TypeVar, overload

from sdk._retry import RetryPolicy, to_ms
from sdk.protocol import DEFAULT_RETRY_POLICY, ScheduleActivity
from sdk.protocol import RetryPolicy as WireRetryPolicy
from sdk.protocol.limits import HISTORY_WARN_BYTES, HISTORY_WARN_EVENTS, MAX_NAME_LENGTH

__all__ = [
    "ActivityHandle",
    "LocalActivityRequest",
    "Signal",
    "WorkflowContext",
    "WorkflowDefinition",
    "WorkflowInfo",
    "exception_types",
    "workflow",
    "workflow_definition",
    "workflow_registry",
]

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

Duration = float | timedelta


@dataclass(frozen=True, slots=True)
class WorkflowDefinition:
    """A registered workflow: the type name it is started by, its function, and the exception
    types that fail its run when they escape it (besides ``ApplicationError`` and
    ``ActivityError``; any other exception fails the workflow task, which is retried)."""

    name: str
    fn: Callable[..., Awaitable[Any]]
    failure_exception_types: tuple[type[BaseException], ...] = field(default=())


def exception_types(types: Iterable[Any], what: str) -> tuple[type[BaseException], ...]:
    """``types`` as a tuple of exception classes; anything else is a ``TypeError``."""
    checked = tuple(types)
    for t in checked:
        if not (isinstance(t, type) and issubclass(t, BaseException)):
            raise TypeError(f"{what} must be exception classes, not {t!r}")
    return checked


@overload
def workflow(fn: F, /) -> F: ...
@overload
def workflow(fn: None = None, /, *, name: str | None = None,
             failure_exception_types: Iterable[type[BaseException]] = ()
             ) -> Callable[[F], F]: ...


def workflow(fn: F | None = None, /, *, name: str | None = None,
             failure_exception_types: Iterable[type[BaseException]] = ()
             ) -> F | Callable[[F], F]:
    """Mark ``async def fn(ctx, input)`` as a workflow, named ``name`` or ``fn.__name__``.

    An exception escaping the workflow fails its run if it is an ``ApplicationError``, an
    ``ActivityError`` or an instance of one of ``failure_exception_types``; any other
    exception is taken for a bug: it fails the workflow task, which the engine retries with
    back-off until fixed code is deployed.
    """
    failure_types = exception_types(failure_exception_types, "failure_exception_types")

    def mark(f: F) -> F:
        if not inspect.iscoroutinefunction(f):
            raise TypeError(f"a workflow must be an async function: {f!r}")
        workflow_name = name if name is not None else f.__name__
        if (not isinstance(workflow_name, str) or not workflow_name
                or len(workflow_name) > MAX_NAME_LENGTH):
            raise ValueError(
                f"a workflow name must be a non-empty string of at most {MAX_NAME_LENGTH}"
            )
        definition = WorkflowDefinition(workflow_name, f, failure_types)
        f.__sched_workflow__ = definition  # type: ignore[attr-defined]
        return f

    return mark if fn is None else mark(fn)


def workflow_definition(obj: Any) -> WorkflowDefinition:
    """The definition of a decorated workflow (or a ``WorkflowDefinition`` itself).

    Raises ``TypeError`` for anything else.
    """
    if isinstance(obj, WorkflowDefinition):
        return obj
    definition = getattr(obj, "__sched_workflow__", None)
    if not isinstance(definition, WorkflowDefinition):
        raise TypeError(f"{obj!r} is not a workflow: decorate it with @sdk.workflow")
    return definition


def workflow_registry(workflows: Iterable[Any]) -> dict[str, WorkflowDefinition]:
    """Workflow definitions by name; two different workflows with one name are an error."""
    registry: dict[str, WorkflowDefinition] = {}
    for obj in workflows:
        definition = workflow_definition(obj)
        known = registry.get(definition.name)
        if known is not None and known.fn is not definition.fn:
            raise ValueError(f"two workflows are named {definition.name!r}")
        registry[definition.name] = definition
    return registry


@dataclass(frozen=True, slots=True)
class WorkflowInfo:
    workflow_id: str
    run_id: str
    workflow_type: str
    task_queue: str
    attempt: int
    # The run's history as of the current workflow task: its events, and about its bytes.
    history_length: int = 0
    history_size_bytes: int = 0

    def is_continue_as_new_suggested(self) -> bool:
        """Whether the history is long enough (``HISTORY_WARN_EVENTS`` events or
        ``HISTORY_WARN_BYTES`` bytes) that the run should continue as new; at ten times
        those (``MAX_HISTORY_*``) the engine fails it with ``history_too_large``."""
        return (self.history_length > HISTORY_WARN_EVENTS
                or self.history_size_bytes > HISTORY_WARN_BYTES)


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    input: Any = None


class DurableFuture(asyncio.Future[Any]):
    """A future for one durable call (``seq``). Cancelling it first runs ``on_cancel``, which
    emits the call's cancel command (``request_cancel_activity`` / ``cancel_timer``)."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, seq: int,
                 on_cancel: Callable[[DurableFuture], None] | None = None) -> None:
        super().__init__(loop=loop)
        self.seq = seq
        self._on_cancel = on_cancel

    def cancel(self, msg: Any | None = None) -> bool:
        if self.done():
            return False
        hook, self._on_cancel = self._on_cancel, None
        if hook is not None:
            hook(self)
        return super().cancel(msg)


class ActivityHandle(DurableFuture):
    """A scheduled activity: await it for the result (or ``ActivityError``), cancel it to ask
    the engine to cancel the activity (the handle is cancelled at once)."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, seq: int, activity_type: str,
                 on_cancel: Callable[[DurableFuture], None] | None = None) -> None:
        super().__init__(loop=loop, seq=seq, on_cancel=on_cancel)
        self.activity_type = activity_type


@dataclass(frozen=True, slots=True)
class LocalActivityRequest:
    """A local activity the workflow code awaits: the worker runs it inside the workflow task.

    Durations are milliseconds; at least one of the two timeouts is set.
    """

    seq: int
    activity_type: str
    input: Any
    retry_policy: WireRetryPolicy
    start_to_close_ms: int | None
    schedule_to_close_ms: int | None


class WorkflowRuntime(Protocol):
    """What ``WorkflowContext`` needs from the runtime (``sdk._runtime.WorkflowInstance``)."""

    @property
    def info(self) -> WorkflowInfo: ...
    @property
    def is_replaying(self) -> bool: ...
    def now(self) -> datetime: ...
    def random(self) -> random.Random: ...
    def schedule_activity(self, command: Callable[[int], ScheduleActivity]) -> ActivityHandle:
        """Number the call, then issue ``command(seq)``."""
        ...
    def start_timer(self, duration_ms: int) -> DurableFuture: ...
    async def wait_for_signal(self, name: str | None, timeout_ms: int | None) -> Signal: ...
    async def side_effect(self, fn: Callable[[], Any]) -> Any: ...
    def local_activity(self, request: Callable[[int], LocalActivityRequest]) -> ActivityHandle:
        """Number the call, then run (or replay) the local activity ``request(seq)``."""
        ...
    def set_query_handler(self, name: str, fn: Callable[..., Any] | None) -> None: ...


def activity_name(activity: Any) -> str:
    """The type name of an activity given as a decorated function or a string."""
    if isinstance(activity, str):
        if not activity or len(activity) > MAX_NAME_LENGTH:
            raise ValueError(
                f"an activity name must be a non-empty string of at most {MAX_NAME_LENGTH}"
            )
        return activity
    # A decorated function, or its ActivityDefinition itself.
    definition = getattr(activity, "__sched_activity__", None)
    if definition is None and callable(getattr(activity, "fn", None)):
        definition = activity
    name = getattr(definition, "name", None)
    if not isinstance(name, str):
        raise TypeError(
            f"{activity!r} is not an activity: decorate it with @sdk.activity or pass its name"
        )
    return name


def _optional_ms(value: Duration | None, what: str) -> int | None:
    return None if value is None else to_ms(value, what)


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value)
    except (TypeError, ValueError) as err:
        raise TypeError(f"{what} is not JSON-serializable: {err}") from None


class WorkflowContext:
    """The workflow's window on the world; the first argument of every workflow function."""

    __slots__ = ("_rt",)

    def __init__(self, runtime: WorkflowRuntime) -> None:
        self._rt = runtime

    @property
    def info(self) -> WorkflowInfo:
        return self._rt.info

    @property
    def is_replaying(self) -> bool:
        """True while the code re-runs a part of its history (its commands are not sent)."""
        return self._rt.is_replaying

    def now(self) -> datetime:
        """The current workflow time (UTC): when the running workflow task started."""
        return self._rt.now()

    def random(self) -> random.Random:
        """A random generator seeded from the run id: the same numbers on every replay."""
        return self._rt.random()

    def uuid4(self) -> uuid.UUID:
        """A version-4 UUID drawn from ``random()``: the same on every replay."""
        return uuid.UUID(int=self._rt.random().getrandbits(128), version=4)

    def start_activity(
        self,
        activity: Any,
        input: Any = None,
        *,
        task_queue: str | None = None,
        retry_policy: RetryPolicy | None = None,
        start_to_close_timeout: Duration | None = None,
        schedule_to_close_timeout: Duration | None = None,
        schedule_to_start_timeout: Duration | None = None,
        heartbeat_timeout: Duration | None = None,
    ) -> ActivityHandle:
        """Schedule an activity now; await the handle for its result."""
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise TypeError("retry_policy must be an sdk.RetryPolicy")
        if task_queue is not None and (not isinstance(task_queue, str) or not task_queue):
            raise ValueError("task_queue must be a non-empty string")
        activity_type = activity_name(activity)
        policy = DEFAULT_RETRY_POLICY if retry_policy is None else retry_policy.to_wire()
        schedule_to_close_ms = _optional_ms(schedule_to_close_timeout, "schedule_to_close_timeout")
        schedule_to_start_ms = _optional_ms(schedule_to_start_timeout, "schedule_to_start_timeout")
        start_to_close_ms = _optional_ms(start_to_close_timeout, "start_to_close_timeout")
        heartbeat_ms = _optional_ms(heartbeat_timeout, "heartbeat_timeout")
        _check_json(input, "the activity input")
        return self._rt.schedule_activity(lambda seq: ScheduleActivity(
            seq=seq, activity_type=activity_type, input=input, task_queue=task_queue,
            retry_policy=policy, schedule_to_close_ms=schedule_to_close_ms,
            schedule_to_start_ms=schedule_to_start_ms, start_to_close_ms=start_to_close_ms,
            heartbeat_ms=heartbeat_ms,
        ))

    async def execute_activity(
        self,
        activity: Any,
        input: Any = None,
        *,
        task_queue: str | None = None,
        retry_policy: RetryPolicy | None = None,
        start_to_close_timeout: Duration | None = None,
        schedule_to_close_timeout: Duration | None = None,
        schedule_to_start_timeout: Duration | None = None,
        heartbeat_timeout: Duration | None = None,
    ) -> Any:
        """Run an activity and return its result; raises ``ActivityError`` if it failed."""
        return await self.start_activity(
            activity, input, task_queue=task_queue, retry_policy=retry_policy,
            start_to_close_timeout=start_to_close_timeout,
            schedule_to_close_timeout=schedule_to_close_timeout,
            schedule_to_start_timeout=schedule_to_start_timeout,
            heartbeat_timeout=heartbeat_timeout,
        )

    async def execute_local_activity(
        self,
        activity: Any,
        input: Any = None,
        *,
        start_to_close_timeout: Duration | None = None,
        schedule_to_close_timeout: Duration | None = None,
        retry_policy: RetryPolicy | None = None,
    ) -> Any:
        """Run a short activity in this worker, inside the current workflow task, and return
        its result; raises ``ActivityError`` if it failed for good.

        Its outcome is recorded as a ``local_activity`` marker in the task's completion, so
        it costs no transition of its own; a replay returns the recorded outcome without
        running the activity again. It runs at least once: a worker that crashes before the
        task completes runs it again. ``start_to_close_timeout`` bounds one attempt and
        ``schedule_to_close_timeout`` all attempts (give at least one); retries follow
        ``retry_policy`` with the back-off slept in the worker, within the workflow task's
        time (``sdk.Worker(local_activity_budget=...)``).
        """
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise TypeError("retry_policy must be an sdk.RetryPolicy")
        activity_type = activity_name(activity)
        start_to_close_ms = _optional_ms(start_to_close_timeout, "start_to_close_timeout")
        schedule_to_close_ms = _optional_ms(schedule_to_close_timeout, "schedule_to_close_timeout")
        if start_to_close_ms is None and schedule_to_close_ms is None:
            raise ValueError("a local activity needs a start_to_close_timeout or a "
                             "schedule_to_close_timeout")
        policy = DEFAULT_RETRY_POLICY if retry_policy is None else retry_policy.to_wire()
        _check_json(input, "the activity input")
        return await self._rt.local_activity(lambda seq: LocalActivityRequest(
            seq=seq, activity_type=activity_type, input=input, retry_policy=policy,
            start_to_close_ms=start_to_close_ms, schedule_to_close_ms=schedule_to_close_ms,
        ))

    async def sleep(self, duration: Duration) -> None:
        """A durable timer. A negative duration sleeps zero (the engine fires it at once).

        ``asyncio.sleep(seconds)`` in workflow code is the same durable timer (but
        ``asyncio.sleep(0)`` only yields), as are the timeouts of ``asyncio.wait_for`` and
        ``asyncio.timeout``."""
        await self._rt.start_timer(to_ms(duration, "duration", minimum=0))

    async def wait_for_signal(
        self, name: str | None = None, *, timeout: Duration | None = None  # noqa: ASYNC109
    ) -> Signal:
        """The next signal (named ``name``, if given), oldest first.

        Signals that arrived earlier wait in a buffer and are never lost. Raises
        ``TimeoutError`` when ``timeout`` passes first.
        """
        if name is not None and not isinstance(name, str):
            raise TypeError("the signal name must be a string")
        timeout_ms = None if timeout is None else to_ms(timeout, "timeout", minimum=0)
        return await self._rt.wait_for_signal(name, timeout_ms)

    async def side_effect(self, fn: Callable[[], T | Awaitable[T]]) -> T:
        """Run ``fn`` once and record its (JSON) value; a replay returns the recorded value."""
        result: T = await self._rt.side_effect(fn)
        return result

    # ---- queries (sdk._queries) ----------------------------------------------------------

    def set_query_handler(self, name: str, fn: Callable[..., Any] | None) -> None:
        """Answer the query ``name`` with ``fn(*args)`` (a client's ``handle.query(name,
        *args)``), a plain function that reads the workflow's state and returns a JSON value;
        ``None`` removes the handler. A query changes nothing: a handler that issues a command
        (an activity, a timer, ``ctx.random()``...) fails that query, never the workflow."""
        self._rt.set_query_handler(name, fn)
