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
from typing import Any, NoReturn, Protocol, TypeVar, overload

from sdk._converter import PayloadConversionError, from_json, return_hint, to_json
from sdk._errors import ContinueAsNewError
from sdk._retry import RetryPolicy, to_ms
from sdk.protocol import DEFAULT_RETRY_POLICY, ScheduleActivity, StartChildWorkflow
from sdk.protocol import RetryPolicy as WireRetryPolicy
from sdk.protocol.commands import PARENT_CLOSE_POLICIES
from sdk.protocol.limits import (
    HISTORY_WARN_BYTES,
    HISTORY_WARN_EVENTS,
    MAX_NAME_LENGTH,
    MAX_WORKFLOW_ID_LENGTH,
)
from sdk.protocol.names import check_name

__all__ = [
    "CANCELLATION_TYPES",
    "ActivityHandle",
    "ChildWorkflowHandle",
    "DynamicSignalHandler",
    "LocalActivityRequest",
    "Signal",
    "SignalHandler",
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

SignalHandler = Callable[[Any], object]
"""``fn(input)``, sync or ``async``: what ``set_signal_handler(name, fn)`` takes."""
DynamicSignalHandler = Callable[[str, Any], object]
"""``fn(name, input)``, sync or ``async``: what ``set_signal_handler(None, fn)`` takes."""


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
    # The run this one continued (``ctx.continue_as_new``), and the run that started this
    # one as its child workflow, if any.
    continued_from_run_id: str | None = None
    parent_workflow_id: str | None = None
    parent_run_id: str | None = None

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


CANCELLATION_TYPES = ("try_cancel", "wait_cancellation_completed", "abandon")
"""What cancelling an activity's handle does (``cancellation_type=``): ``try_cancel`` asks
the engine to cancel it and cancels the handle at once; ``wait_cancellation_completed`` asks
and keeps the handle pending until the activity reports (canceled: the handle is cancelled;
completed: its result; failed: ``ActivityError``); ``abandon`` cancels the handle and does not
tell the engine (the activity runs on, its outcome ignored)."""


class ActivityHandle(DurableFuture):
    """A scheduled activity: await it for the result (or ``ActivityError``), cancel it to ask
    the engine to cancel the activity (what then happens is its ``cancellation_type``).

    The result is rebuilt as ``result_type`` (``sdk._converter.from_json``) when it is set:
    a value that does not fit raises ``PayloadConversionError`` where it is awaited."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, seq: int, activity_type: str,
                 on_cancel: Callable[[DurableFuture], None] | None = None) -> None:
        super().__init__(loop=loop, seq=seq, on_cancel=on_cancel)
        self.activity_type = activity_type
        self.result_type: Any = Any
        self.cancellation_type = "try_cancel"
        self.cancel_requested = False  # wait_cancellation_completed: asked, not yet over
        self._cancel_message: Any = None

    def cancel(self, msg: Any | None = None) -> bool:
        if self.cancellation_type != "wait_cancellation_completed":
            return super().cancel(msg)
        if self.done():
            return False
        if not self.cancel_requested:  # ask once; stay pending until the activity reports
            self.cancel_requested = True
            self._cancel_message = msg
            hook, self._on_cancel = self._on_cancel, None
            if hook is not None:
                hook(self)
        return True

    def cancel_completed(self) -> None:
        """The activity reported that it was canceled: cancel the handle now."""
        if not self.done():
            asyncio.Future.cancel(self, self._cancel_message)

    def set_result(self, result: Any) -> None:
        try:
            value = from_json(result, self.result_type)
        except PayloadConversionError as err:
            super().set_exception(err)
        else:
            super().set_result(value)


CANCELLATION_TYPES = ("wait_cancellation_completed", "try_cancel", "abandon")
"""What cancelling a child's handle does: ask the child to cancel and wait until it has
closed (``wait_cancellation_completed``); ask and stop waiting (``try_cancel``); or stop
waiting and leave the child alone (``abandon``)."""


class ChildWorkflowHandle(DurableFuture):
    """A child workflow this workflow started: await it for the child's result (or
    ``ChildWorkflowError``); ``signal`` it; cancel it (as its ``cancellation_type`` says).
    ``run_id`` is the child's first run (a child that continues as new goes on under the
    same ``workflow_id``)."""

    def __init__(self, *, loop: asyncio.AbstractEventLoop, seq: int, workflow_id: str,
                 workflow_type: str, runtime: WorkflowRuntime, cancellation_type: str,
                 on_cancel: Callable[[DurableFuture], None] | None = None) -> None:
        super().__init__(loop=loop, seq=seq, on_cancel=on_cancel)
        self.workflow_id = workflow_id
        self.workflow_type = workflow_type
        self.cancellation_type = cancellation_type
        self.run_id: str | None = None
        self.started: asyncio.Future[str] = loop.create_future()
        self._runtime = runtime
        self._cancel_asked = False

    def cancel(self, msg: Any | None = None) -> bool:
        if self.done():
            return False
        if self.cancellation_type != "wait_cancellation_completed":
            return super().cancel(msg)
        # Ask once; the handle ends when the child closes (canceled: CancelledError).
        if not self._cancel_asked:
            self._cancel_asked = True
            self._runtime.cancel_child(self)
        return True

    async def signal(self, name: str, input: Any = None) -> None:
        """Signal the child; returns once the engine delivered it, raises
        ``ChildWorkflowError`` (``signal_failed``) if the child had closed."""
        if not isinstance(name, str):
            raise TypeError("the signal name must be a string")
        check_name(name, what="the signal name")
        _check_json(input, "the signal input")
        await self.started
        await self._runtime.signal_child(self, name, input)


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
    def set_signal_handler(self, name: str | None,
                           fn: Callable[..., object] | None) -> None: ...
    async def wait_condition(self, fn: Callable[[], object], timeout_ms: int | None) -> None: ...
    def patched(self, patch_id: str, *, deprecated: bool) -> bool: ...
    def local_activity(self, request: Callable[[int], LocalActivityRequest]) -> ActivityHandle:
        """Number the call, then run (or replay) the local activity ``request(seq)``."""
        ...
    def start_child_workflow(self, command: Callable[[int], StartChildWorkflow],
                             cancellation_type: str) -> ChildWorkflowHandle:
        """Number the call, then issue ``command(seq)``."""
        ...
    def cancel_child(self, handle: ChildWorkflowHandle) -> None: ...
    def signal_child(self, handle: ChildWorkflowHandle, name: str,
                     input: Any) -> DurableFuture: ...
    def set_query_handler(self, name: str, fn: Callable[..., Any] | None) -> None: ...
    def set_update_handler(self, name: str, fn: Callable[..., object] | None,
                           validator: Callable[..., object] | None) -> None: ...


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


def _json_input(value: Any) -> Any:
    """An activity's input as plain JSON (dataclasses, models, ... converted)."""
    converted = to_json(value)
    _check_json(converted, "the activity input")
    return converted


def _result_type(activity: Any, result_type: Any) -> Any:
    """What to rebuild an activity's result as: ``result_type``, else the return annotation
    of the activity function when one (not a name) was given, else ``Any``."""
    if result_type is not None:
        return result_type
    fn = getattr(getattr(activity, "__sched_activity__", activity), "fn", None)
    return return_hint(fn) if callable(fn) else Any


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
        result_type: Any = None,
        cancellation_type: str = "try_cancel",
    ) -> ActivityHandle:
        """Schedule an activity now; await the handle for its result.

        ``input`` may hold dataclasses and pydantic models (sent as JSON objects); the result
        is rebuilt as ``result_type``, or as the activity function's return annotation when
        the function (not its name) is passed. ``cancellation_type`` says what cancelling the
        handle does (``CANCELLATION_TYPES``)."""
        if cancellation_type not in CANCELLATION_TYPES:
            raise ValueError(f"cancellation_type must be one of {', '.join(CANCELLATION_TYPES)}")
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
        input = _json_input(input)
        handle = self._rt.schedule_activity(lambda seq: ScheduleActivity(
            seq=seq, activity_type=activity_type, input=input, task_queue=task_queue,
            retry_policy=policy, schedule_to_close_ms=schedule_to_close_ms,
            schedule_to_start_ms=schedule_to_start_ms, start_to_close_ms=start_to_close_ms,
            heartbeat_ms=heartbeat_ms,
        ))
        handle.result_type = _result_type(activity, result_type)
        handle.cancellation_type = cancellation_type
        return handle

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
        result_type: Any = None,
        cancellation_type: str = "try_cancel",
    ) -> Any:
        """Run an activity and return its result; raises ``ActivityError`` if it failed."""
        return await self.start_activity(
            activity, input, task_queue=task_queue, retry_policy=retry_policy,
            start_to_close_timeout=start_to_close_timeout,
            schedule_to_close_timeout=schedule_to_close_timeout,
            schedule_to_start_timeout=schedule_to_start_timeout,
            heartbeat_timeout=heartbeat_timeout, result_type=result_type,
            cancellation_type=cancellation_type,
        )

    async def execute_local_activity(
        self,
        activity: Any,
        input: Any = None,
        *,
        start_to_close_timeout: Duration | None = None,
        schedule_to_close_timeout: Duration | None = None,
        retry_policy: RetryPolicy | None = None,
        result_type: Any = None,
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
        input = _json_input(input)
        handle = self._rt.local_activity(lambda seq: LocalActivityRequest(
            seq=seq, activity_type=activity_type, input=input, retry_policy=policy,
            start_to_close_ms=start_to_close_ms, schedule_to_close_ms=schedule_to_close_ms,
        ))
        handle.result_type = _result_type(activity, result_type)
        return await handle

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

    # ---- signal handlers and conditions --------------------------------------------------

    @overload
    def set_signal_handler(self, name: str, fn: SignalHandler | None) -> None: ...
    @overload
    def set_signal_handler(self, name: None, fn: DynamicSignalHandler | None) -> None: ...

    def set_signal_handler(self, name: str | None,
                           fn: SignalHandler | DynamicSignalHandler | None) -> None:
        """Handle the signals named ``name`` with ``fn(input)``, or, with ``name=None``, every
        signal no named handler takes with ``fn(name, input)`` (a dynamic handler).

        ``fn`` may be sync or ``async`` (an async one may run activities and sleep). Each
        signal runs its handler as a workflow coroutine of its own, started in the order the
        signals arrived; signals that arrived before the handler was set (and that no
        ``wait_for_signal`` took) go to it now, oldest first. A handler takes its signals
        from ``wait_for_signal``: only signals no handler takes are buffered for it. An
        exception escaping a handler fails the run or the workflow task exactly as one
        escaping the workflow does. ``fn=None`` removes the handler: later signals are
        buffered again.
        """
        if name is not None:
            if not isinstance(name, str):
                raise TypeError("the signal name must be a string or None")
            check_name(name, what="the signal name")
        if fn is not None and not callable(fn):
            raise TypeError(f"a signal handler must be callable, not {fn!r}")
        self._rt.set_signal_handler(name, fn)

    async def wait_condition(
        self, fn: Callable[[], object], *, timeout: Duration | None = None  # noqa: ASYNC109
    ) -> None:
        """Wait until ``fn()`` is true; returns at once if it already is.

        ``fn`` is called whenever the workflow's coroutines have nothing left to run, so it
        sees what signal handlers and other coroutines changed; it must only read state.
        ``timeout`` starts a durable timer: ``TimeoutError`` is raised when it fires and
        ``fn()`` is still false (a condition met first cancels the timer).
        """
        if not callable(fn):
            raise TypeError(f"the condition must be callable, not {fn!r}")
        timeout_ms = None if timeout is None else to_ms(timeout, "timeout", minimum=0)
        await self._rt.wait_condition(fn, timeout_ms)

    # ---- versioning ------------------------------------------------------------------------

    def patched(self, patch_id: str) -> bool:
        """Whether this run takes the new code of the change named ``patch_id``.

        A run executing the call for the first time records a ``patch`` marker and gets
        True; a replay gets True if its history holds that marker, and False (the old
        branch, nothing recorded) if the run got past this point under code without the
        call. The answer is fixed for the run after the first call.
        """
        return self._rt.patched(_patch_id(patch_id), deprecated=False)

    def deprecate_patch(self, patch_id: str) -> None:
        """Record the ``patch`` marker of ``patch_id`` without branching, once no run that
        needs the old branch is left: a later deploy can then drop the call altogether,
        and runs with or without the marker in their history still replay."""
        self._rt.patched(_patch_id(patch_id), deprecated=True)


    # ---- child workflows and continue-as-new -------------------------------------------

    async def start_child_workflow(
        self,
        workflow: Any,
        input: Any = None,
        *,
        workflow_id: str | None = None,
        task_queue: str | None = None,
        execution_timeout: Duration | None = None,
        retry_policy: RetryPolicy | None = None,
        parent_close_policy: str = "terminate",
        cancellation_type: str = "wait_cancellation_completed",
    ) -> ChildWorkflowHandle:
        """Start a child workflow and return its handle once the child has started; raises
        ``ChildWorkflowError`` (``start_failed``) if ``workflow_id`` has an open run.

        ``workflow`` is a decorated workflow or its type name; ``workflow_id`` defaults to
        one drawn from this run (the same on replay). ``parent_close_policy`` says what the
        engine does to the child if it is still running when this run closes, however it
        closes (continue-as-new included): ``terminate`` it, ``abandon`` it (it runs on) or
        ``request_cancel`` it. ``retry_policy`` (an ``sdk.RetryPolicy``): when a run of the
        child fails, the engine starts a new run of the same workflow id with the same input
        after the policy's back-off (``ctx.info().attempt`` counts up), honouring
        ``maximum_attempts`` and ``non_retryable_error_types``; this run hears only of the
        last run (its result, or its failure once no attempt is left). None: no retry."""
        workflow_type = _workflow_type_name(workflow)
        if workflow_id is not None:
            if not isinstance(workflow_id, str):
                raise TypeError("workflow_id must be a string")
            check_name(workflow_id, what="workflow_id", max_length=MAX_WORKFLOW_ID_LENGTH)
        if task_queue is not None:
            if not isinstance(task_queue, str):
                raise TypeError("task_queue must be a string")
            check_name(task_queue, what="task_queue")
        if retry_policy is not None and not isinstance(retry_policy, RetryPolicy):
            raise TypeError("retry_policy must be an sdk.RetryPolicy")
        if parent_close_policy not in PARENT_CLOSE_POLICIES:
            raise ValueError(f"parent_close_policy must be one of "
                             f"{', '.join(PARENT_CLOSE_POLICIES)}")
        if cancellation_type not in CANCELLATION_TYPES:
            raise ValueError(f"cancellation_type must be one of {', '.join(CANCELLATION_TYPES)}")
        timeout_ms = _optional_ms(execution_timeout, "execution_timeout")
        _check_json(input, "the child workflow input")
        info = self.info
        handle = self._rt.start_child_workflow(lambda seq: StartChildWorkflow(
            seq=seq, workflow_type=workflow_type,
            workflow_id=workflow_id or f"{info.workflow_id[:200]}-{info.run_id[:8]}-child-{seq}",
            input=input, task_queue=task_queue, execution_timeout_ms=timeout_ms,
            parent_close_policy=parent_close_policy,
            retry_policy=None if retry_policy is None else retry_policy.to_wire(),
        ), cancellation_type)
        await handle.started
        return handle

    async def execute_child_workflow(
        self,
        workflow: Any,
        input: Any = None,
        *,
        workflow_id: str | None = None,
        task_queue: str | None = None,
        execution_timeout: Duration | None = None,
        retry_policy: RetryPolicy | None = None,
        parent_close_policy: str = "terminate",
        cancellation_type: str = "wait_cancellation_completed",
    ) -> Any:
        """Run a child workflow and return its result; raises ``ChildWorkflowError`` if it
        did not complete (with the child's failure as ``cause``). The arguments are
        ``start_child_workflow``'s."""
        handle = await self.start_child_workflow(
            workflow, input, workflow_id=workflow_id, task_queue=task_queue,
            execution_timeout=execution_timeout, retry_policy=retry_policy,
            parent_close_policy=parent_close_policy, cancellation_type=cancellation_type)
        return await handle

    def continue_as_new(self, input: Any = None, *, workflow: Any = None,
                        task_queue: str | None = None) -> NoReturn:
        """Close this run and start a new run of the same workflow id with ``input`` (a fresh
        history), of ``workflow`` on ``task_queue`` if given. Raises ``ContinueAsNewError``,
        which the runtime turns into the command: let it propagate."""
        workflow_type = None if workflow is None else _workflow_type_name(workflow)
        if task_queue is not None:
            if not isinstance(task_queue, str):
                raise TypeError("task_queue must be a string")
            check_name(task_queue, what="task_queue")
        _check_json(input, "the continue-as-new input")
        raise ContinueAsNewError(input, workflow_type=workflow_type, task_queue=task_queue)


    # ---- queries (sdk._queries) ----------------------------------------------------------

    def set_query_handler(self, name: str, fn: Callable[..., Any] | None) -> None:
        """Answer the query ``name`` with ``fn(*args)`` (a client's ``handle.query(name,
        *args)``), a plain function that reads the workflow's state and returns a JSON value;
        ``None`` removes the handler. A query changes nothing: a handler that issues a command
        (an activity, a timer, ``ctx.random()``...) fails that query, never the workflow."""
        self._rt.set_query_handler(name, fn)

    def set_update_handler(self, name: str, fn: Callable[..., object] | None, *,
                           validator: Callable[..., object] | None = None) -> None:
        """Handle the updates named ``name`` (a client's ``handle.execute_update(name,
        *args)``) with ``fn(*args)``, whose return value (JSON) is the update's result.

        ``fn`` may be sync or ``async``: an async handler may run activities, sleep and wait
        like any workflow coroutine; each accepted update runs it as a coroutine of its own,
        in the order the updates were accepted. An ``ApplicationError`` (or an
        ``ActivityError``, or another of the workflow's failure exception types) escaping it
        fails the update, not the run; any other exception fails the workflow task, like one
        escaping the workflow function.

        ``validator``, a plain (sync) function called with the same ``args`` before the
        update is accepted, rejects it by raising: the caller gets ``update_rejected`` with
        the exception's message and nothing is written to the history. Like a query
        handler, it reads the workflow's state and must not change it. ``fn=None`` removes
        the handler. Updates accepted before their handler is set wait for it."""
        if not isinstance(name, str):
            raise TypeError("the update name must be a string")
        check_name(name, what="the update name")
        if fn is not None and not callable(fn):
            raise TypeError(f"an update handler must be callable, not {fn!r}")
        if validator is not None:
            if not callable(validator):
                raise TypeError(f"an update validator must be callable, not {validator!r}")
            if inspect.iscoroutinefunction(validator):
                raise TypeError("an update validator must be a plain (sync) function")
        self._rt.set_update_handler(name, fn, validator)


def _patch_id(patch_id: Any) -> str:
    if not isinstance(patch_id, str):
        raise TypeError("a patch id must be a string")
    return check_name(patch_id, what="a patch id")


def _workflow_type_name(workflow: Any) -> str:
    """The type name of a workflow given as a decorated function or a string."""
    if isinstance(workflow, str):
        check_name(workflow, what="the workflow type")
        return workflow
    return workflow_definition(workflow).name
