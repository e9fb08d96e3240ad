"""The deterministic workflow runtime: replay a run's history, run its next workflow task.

Design (Temporal's model, as in temporalio/sdk-python's ``_WorkflowInstanceImpl``):

* A ``WorkflowInstance`` *is* an event loop. ``_Loop`` subclasses ``asyncio.AbstractEventLoop``
  with a FIFO ready queue and a clock that is workflow time: no I/O, no threads. Workflow code
  runs only while ``activate`` drains that queue, so the order of every step is a function of
  the history alone. ``asyncio.gather``/``wait``/``shield``/``create_task`` work because they
  need nothing but ``call_soon`` and futures. ``time()`` is the current workflow task's start
  (``ctx.now()``), and ``call_later``/``call_at`` start a durable timer (a ``start_timer``
  command, exactly what ``ctx.sleep`` issues) whose ``TimerFired`` runs the callback; cancelling
  the handle cancels the timer. So ``asyncio.sleep(5)`` and the timeouts of ``wait_for`` and
  ``asyncio.timeout`` are durable and replay like ``ctx.sleep`` (``asyncio.sleep(0)`` schedules
  no timer: asyncio only yields). Rejected: running workflows on the worker's own loop with
  patched time (one stray await on a socket breaks determinism silently), and a hand-written
  coroutine trampoline (re-implements asyncio and breaks ``gather``).
* Replay walks the events once, in order. Input events (activity outcomes, timers, signals,
  cancel requests) are queued as jobs; each ``WorkflowTaskStarted`` whose task completed in
  history is an *activation* replayed with ``is_replaying``: jobs are applied, the loop runs
  until nothing is ready, and the commands the code issued must equal the command events that
  follow the task's ``WorkflowTaskCompleted`` (kind, seq, name) - else ``NonDeterminismError``.
  A task that failed or timed out in history is skipped (its output was thrown away; its jobs
  wait for the next one). The last ``WorkflowTaskStarted`` of the batch is the current task,
  whose commands are returned.
* Sticky execution costs O(new events): the instance keeps its loop, futures and pending
  command matches between activations, and the next batch starts right after the events it
  has seen (its first events are the command events of the task it just ran, matched then).
  Results are routed by ``seq`` (every result event carries it), so no history is kept.
* Local activities (``ctx.execute_local_activity``) run in the worker inside the current
  task. Their ``record_marker`` command takes its place when the code issues it; when the loop
  has nothing ready and local activities are pending, the current activation *pauses*:
  ``activate`` returns them (``ActivationResult.local_activities``), the worker runs them and
  hands their outcomes to ``resolve_local_activities``, which fills the markers, resolves the
  futures in issue order and runs the loop again, until none is pending and the task's
  commands are returned. A replayed task pauses at the same points, answering each batch from
  the task's ``local_activity`` markers instead, so the code interleaves exactly as it did.
* ``activate`` never raises: a failed match is ``cause="nondeterminism"``, anything else that
  goes wrong outside workflow code is ``cause="worker_error"``. An exception escaping workflow
  code fails the run (``fail_workflow``) only if it is an ``ApplicationError``, an
  ``ActivityError`` or one of the workflow's and the worker's ``failure_exception_types``;
  any other is a bug (``KeyError``, ``TypeError``, ...): the workflow task fails with
  ``cause="workflow_error"`` and the engine retries it with back-off, so deploying fixed code
  resumes the run, as in Temporal. After any task failure the instance is broken and must be
  dropped (the engine throws the task's commands away; the retry replays from scratch).
* Signal handlers (``ctx.set_signal_handler``) take a signal before any ``wait_for_signal``
  waiter or the buffer: a named handler its name's, the dynamic one (``name=None``) the rest.
  Each signal runs its handler as a task of the loop, created when the signal is applied (or,
  for a buffered one, when its handler is set), so handlers start in history order, sync and
  async alike, and an async one may await durable calls like any coroutine. A handler's
  exception is treated like the workflow function's. ``wait_condition`` futures are checked
  whenever the loop has nothing ready (all of them, in order, as Temporal does), so a
  condition sees every step that ran; its timeout is a durable timer, and a condition that
  holds when the timer fires still wins.
* Patches (``ctx.patched``) are ``patch`` markers that replay tolerates, as Temporal's do. A
  current task records one (a new seq) and answers True; a replayed task answers True iff its
  history (seen so far, including the task's own command events) holds the patch, and then
  issues it again with the history's seq, without a match key. Patch markers in history are
  never matched against the code: code that dropped the call replays, and every seq a patch
  marker holds in history is skipped by ``_next_seq`` so the calls after it keep their seqs.
  Rejected: numbering patches from a counter of their own (the engine wants one growing seq)
  and matching them like other markers (dropping a deprecated patch would be a
  non-determinism error).
* ``busy_since`` is when the workflow code's current step (one callback of the loop) began,
  or None between steps: the worker runs each activation in a thread of its own and watches
  it, so code that does not yield for too long (a deadlock) fails its task (``sdk._activations``).
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import json
import logging
import math
import random
import sys
import time
from collections import deque
from collections.abc import Callable, Coroutine, Generator
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any, NoReturn, TypeVar

from sdk._converter import PayloadConversionError, from_json, input_hint, to_json
from sdk._errors import (
    ActivityError,
    ApplicationError,
    ChildWorkflowError,
    ContinueAsNewError,
    NonDeterminismError,
    SchedError,
    failure_from_exception,
)
from sdk._queries import UPDATE_NOT_FOUND, QueryAnswer, QueryHandlers
from sdk._workflow import (
    ActivityHandle,
    ChildWorkflowHandle,
    DurableFuture,
    LocalActivityRequest,
    Signal,
    WorkflowContext,
    WorkflowDefinition,
    WorkflowInfo,
)
from sdk.protocol import (
    LOCAL_ACTIVITY_MARKER,
    PATCH_MARKER,
    CancelTimer,
    CancelWorkflow,
    Command,
    CompleteUpdate,
    CompleteWorkflow,
    ContinueAsNew,
    EventType,
    FailWorkflow,
    RecordMarker,
    RequestCancelActivity,
    RequestCancelExternalWorkflow,
    ScheduleActivity,
    SignalExternalWorkflow,
    StartChildWorkflow,
    StartTimer,
    WireCommand,
    WireEvent,
    WireFailure,
    encode_commands,
    normalize_failure,
)

__all__ = [
    "ActivationResult",
    "LocalActivityOutcome",
    "LocalActivityRequest",
    "ReplayResult",
    "WorkflowInstance",
    "replay_history",
]

logger = logging.getLogger(__name__)

T = TypeVar("T")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

E = EventType

# History events that record a seq-creating command, and the command kind each answers.
_COMMAND_EVENTS: dict[EventType, tuple[str, str | None]] = {
    E.ACTIVITY_TASK_SCHEDULED: ("schedule_activity", "activity_type"),
    E.TIMER_STARTED: ("start_timer", None),
    E.MARKER_RECORDED: ("record_marker", "marker_name"),
    E.WORKFLOW_EXECUTION_COMPLETED: ("complete_workflow", None),
    E.WORKFLOW_EXECUTION_FAILED: ("fail_workflow", None),
    E.WORKFLOW_EXECUTION_CANCELED: ("cancel_workflow", None),
    E.START_CHILD_WORKFLOW_EXECUTION_INITIATED: ("start_child_workflow", "workflow_type"),
    E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED: ("signal_external_workflow", "signal_name"),
    E.WORKFLOW_EXECUTION_UPDATE_COMPLETED: ("complete_update", "update_id"),
}
# Events a completed task's commands produce that are not matched (cancels are best effort:
# the engine drops one whose target already finished). A continue-as-new is not matched
# either: the engine defers it when news arrived meanwhile, and the code, which has already
# raised it, issues it again in the next task.
_UNMATCHED_COMMAND_EVENTS = frozenset({
    E.ACTIVITY_TASK_CANCEL_REQUESTED, E.TIMER_CANCELED,
    E.REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
})
# Answers to a child workflow's commands: routed to its handle by seq.
_CHILD_JOB_EVENTS = frozenset({
    E.START_CHILD_WORKFLOW_EXECUTION_FAILED, E.CHILD_WORKFLOW_EXECUTION_STARTED,
    E.CHILD_WORKFLOW_EXECUTION_COMPLETED, E.CHILD_WORKFLOW_EXECUTION_FAILED,
    E.CHILD_WORKFLOW_EXECUTION_CANCELED, E.CHILD_WORKFLOW_EXECUTION_TERMINATED,
    E.CHILD_WORKFLOW_EXECUTION_TIMED_OUT, E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED,
    E.EXTERNAL_WORKFLOW_EXECUTION_SIGNALED,
})
# How a child ended, as ``ChildWorkflowError.status``.
_CHILD_STATUS = {
    E.CHILD_WORKFLOW_EXECUTION_FAILED: "failed",
    E.CHILD_WORKFLOW_EXECUTION_CANCELED: "canceled",
    E.CHILD_WORKFLOW_EXECUTION_TERMINATED: "terminated",
    E.CHILD_WORKFLOW_EXECUTION_TIMED_OUT: "timed_out",
}
_TASK_OUTCOMES = frozenset(
    {E.WORKFLOW_TASK_COMPLETED, E.WORKFLOW_TASK_FAILED, E.WORKFLOW_TASK_TIMED_OUT}
)
_JOB_EVENTS = frozenset(
    {
        E.ACTIVITY_TASK_COMPLETED, E.ACTIVITY_TASK_FAILED, E.ACTIVITY_TASK_TIMED_OUT,
        E.ACTIVITY_TASK_CANCELED, E.TIMER_FIRED, E.WORKFLOW_EXECUTION_SIGNALED,
        E.WORKFLOW_EXECUTION_CANCEL_REQUESTED, E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED,
        *_CHILD_JOB_EVENTS,
    }
)
# Events with nothing for the workflow code.
_IGNORED_EVENTS = frozenset(
    {
        E.WORKFLOW_TASK_SCHEDULED, E.ACTIVITY_TASK_STARTED, E.WORKFLOW_EXECUTION_TERMINATED,
        E.WORKFLOW_EXECUTION_TIMED_OUT, E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW,
    }
)

_swap_current_task: Callable[[asyncio.AbstractEventLoop, Any], Any] | None = (
    getattr(asyncio.tasks, "_swap_current_task", None) if sys.version_info >= (3, 14) else None
)

# A command this code issued, as matched against history: (kind, seq, name).
_Key = tuple[str, int, str]


class _WorkerError(SchedError):
    """Something went wrong that is not the workflow code's doing."""


class _WorkflowCodeError(SchedError):
    """The workflow code raised ``error``, which fails the workflow task, not the run."""

    def __init__(self, error: BaseException) -> None:
        super().__init__(str(error))
        self.error = error


# What fails the run when it escapes workflow code, whatever the failure_exception_types.
_RUN_FAILURES: tuple[type[BaseException], ...] = (ApplicationError, ActivityError,
                                                  ChildWorkflowError)


@dataclass(slots=True)
class ActivationResult:
    """``commands`` to complete the workflow task with, or ``failure`` + ``cause`` to fail it
    (``cause`` is ``"nondeterminism"``, ``"workflow_error"`` or ``"worker_error"``; the instance
    must be dropped),
    or neither: the activation is paused on ``local_activities``, which the worker runs and
    hands back to ``WorkflowInstance.resolve_local_activities``."""

    commands: list[WireCommand] | None = None
    failure: WireFailure | None = None
    cause: str | None = None
    local_activities: list[LocalActivityRequest] | None = None


@dataclass(frozen=True, slots=True)
class LocalActivityOutcome:
    """How a local activity ended in the worker: ``result``, or ``failure`` (the activity
    failure shape; ``timeout_type`` when a timeout ended it), after ``attempts`` attempts."""

    seq: int
    result: Any = None
    failure: WireFailure | None = None
    attempts: int = 1
    timeout_type: str | None = None


class _DurableTimerHandle(asyncio.TimerHandle):
    """A ``call_later``/``call_at`` callback behind a durable timer: it runs when the timer's
    ``TimerFired`` is applied; cancelling it cancels the timer (a ``cancel_timer`` command
    unless the timer already fired)."""

    __slots__ = ("_timer",)

    def __init__(self, when: float, callback: Callable[..., object], args: tuple[Any, ...],
                 loop: _Loop, context: contextvars.Context | None,
                 timer: asyncio.Future[Any]) -> None:
        super().__init__(when, callback, args, loop, context)
        self._timer = timer
        timer.add_done_callback(self._fired)

    def _fired(self, timer: asyncio.Future[Any]) -> None:
        if not timer.cancelled() and not self.cancelled():
            self._run()

    def cancel(self) -> None:
        if not self.cancelled():
            self._timer.cancel()
        super().cancel()


class _Loop(asyncio.AbstractEventLoop):
    """A deterministic event loop: a FIFO of ready callbacks, and durable timers on a clock
    that is workflow time (``start_timer`` issues a timer's command and returns its future)."""

    def __init__(self, start_timer: Callable[[int], asyncio.Future[Any]]) -> None:
        self._ready: deque[asyncio.Handle] = deque()
        self._time = 0.0
        self._start_timer = start_timer
        self._running = False
        # When the callback running now began (time.monotonic()), None between callbacks:
        # read from the worker's thread to tell a step that does not yield (a deadlock).
        self.step_started: float | None = None
        # Strong references: asyncio holds tasks weakly, and a task collected half-way would
        # run its ``finally`` blocks (and issue commands) at a moment replay cannot reproduce.
        self._tasks: set[asyncio.Task[Any]] = set()
        # An exception that escaped a callback (not a task: tasks keep theirs).
        self.callback_error: BaseException | None = None

    def run_ready(self) -> None:
        """Run callbacks until none is ready, with this loop as the thread's running loop."""
        previous = asyncio.events._get_running_loop()
        asyncio.events._set_running_loop(self)
        # Python 3.14 keeps one running task per thread, not per loop: park the worker's task
        # (the caller) while ours run. Earlier versions key it by loop: nothing to do.
        outer_task = _swap_current_task(self, None) if _swap_current_task else None
        self._running = True
        try:
            ready = self._ready
            while ready:
                handle = ready.popleft()
                if not handle.cancelled():
                    self.step_started = time.monotonic()
                    handle._run()
        finally:
            self.step_started = None
            self._running = False
            if _swap_current_task:
                _swap_current_task(self, outer_task)
            asyncio.events._set_running_loop(previous)

    # ---- what asyncio's futures, tasks, gather, wait and shield use --------------------

    def call_soon(  # type: ignore[override]
        self, callback: Callable[..., object], *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.Handle:
        handle = asyncio.Handle(callback, args, self, context)
        self._ready.append(handle)
        return handle

    def create_future(self) -> asyncio.Future[Any]:
        return asyncio.Future(loop=self)

    def create_task(
        self, coro: Coroutine[Any, Any, T] | Generator[Any, None, T], *,
        name: str | None = None, context: contextvars.Context | None = None,
    ) -> asyncio.Task[T]:
        task = asyncio.Task(coro, loop=self, name=name, context=context)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def time(self) -> float:
        return self._time

    def get_debug(self) -> bool:
        return False

    def is_running(self) -> bool:
        return self._running

    def is_closed(self) -> bool:
        return False

    def call_exception_handler(self, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if "handle" in context and isinstance(exc, BaseException):
            if self.callback_error is None:
                self.callback_error = exc
            return
        # Unretrieved exceptions of abandoned futures, tasks destroyed while pending: these
        # are the workflow's business and change nothing; keep them out of the worker's log.
        logger.debug("workflow event loop: %s", context.get("message"))

    def default_exception_handler(self, context: dict[str, Any]) -> None:
        self.call_exception_handler(context)

    # ---- durable timers: asyncio.sleep, wait_for, asyncio.timeout --------------------------

    def call_later(  # type: ignore[override]
        self, delay: float, callback: Callable[..., object], *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        """Run ``callback`` after ``delay`` seconds of workflow time, on a durable timer (of
        whole milliseconds, at least one). A delay of zero or less runs it soon, with no
        timer; an infinite one never (no timer either, as asyncio would never run it)."""
        when = self._time + delay
        if delay <= 0:
            handle = asyncio.TimerHandle(when, callback, args, self, context)
            self._ready.append(handle)
            return handle
        if not math.isfinite(delay):
            return asyncio.TimerHandle(when, callback, args, self, context)
        timer = self._start_timer(max(1, round(delay * 1000)))
        return _DurableTimerHandle(when, callback, args, self, context, timer)

    def call_at(  # type: ignore[override]
        self, when: float, callback: Callable[..., object], *args: Any,
        context: contextvars.Context | None = None,
    ) -> asyncio.TimerHandle:
        return self.call_later(when - self._time, callback, *args, context=context)

    def _timer_handle_cancelled(self, handle: asyncio.TimerHandle) -> None:
        """Called by ``TimerHandle.cancel``: a durable one cancels its timer itself."""

    # ---- what a workflow may not use ----------------------------------------------------

    def call_soon_threadsafe(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        raise RuntimeError("workflow code cannot be woken from another thread")

    def run_in_executor(self, *args: Any, **kwargs: Any) -> NoReturn:  # type: ignore[override]
        raise RuntimeError("workflow code cannot run threads: do the work in an activity")


@dataclass(eq=False, slots=True)
class _SignalWaiter:
    name: str | None
    future: asyncio.Future[Signal]


@dataclass(eq=False, slots=True)
class _Condition:
    """A ``wait_condition`` waiting for ``fn()`` to be true."""

    fn: Callable[[], object]
    future: asyncio.Future[None]


@dataclass(eq=False, slots=True)
class _LocalActivity:
    """A local activity issued by the code and not yet resolved."""

    request: LocalActivityRequest
    handle: ActivityHandle
    command: RecordMarker
    key: _Key


@dataclass(slots=True)
class _Placeholder:
    """A side-effect marker command whose value is still being computed."""

    command: RecordMarker
    key: _Key
    filled: bool = False


class WorkflowInstance:
    """One run of one workflow, rebuilt from its history and kept for its next tasks."""

    def __init__(self, definition: WorkflowDefinition, *, workflow_id: str, run_id: str,
                 workflow_type: str, task_queue: str,
                 failure_exception_types: tuple[type[BaseException], ...] = ()) -> None:
        self.definition = definition
        self._run_failures = (_RUN_FAILURES + definition.failure_exception_types
                              + tuple(failure_exception_types))
        self.workflow_id = workflow_id
        self.run_id = run_id
        self.workflow_type = workflow_type
        self.task_queue = task_queue
        self.next_event_id = 1
        # Whether this copy has seen the run's whole history, through the last events the
        # engine appended (the worker sets it: a completion's ack carried them; ``sdk._worker``
        # may then run the run's next workflow task eagerly on an activity's result).
        self.eager_ready = False
        # The history's figures the engine sent with the current task (the worker sets them).
        self.history_length = 0
        self.history_size_bytes = 0
        self._started: dict[str, Any] = {}  # WorkflowExecutionStarted's attributes
        self._continue_as_new: ContinueAsNew | None = None
        self._loop = _Loop(self.start_timer)  # type: ignore[abstract]  # only what asyncio uses
        self._ctx = WorkflowContext(self)
        self._main: asyncio.Task[Any] | None = None
        self._seq = 0
        # Commands issued by the activation being run (returned if it is the current one).
        self._commands: list[Command] = []
        # Seq-creating and closing commands issued but not yet seen in history, in order.
        self._unmatched: deque[_Key] = deque()
        self._in_block = False  # inside the command events after a WorkflowTaskCompleted
        self._jobs: list[WireEvent] = []
        self._pending: dict[int, DurableFuture] = {}
        self._signals: deque[Signal] = deque()
        self._waiters: list[_SignalWaiter] = []
        self._timer_waiters: dict[int, _SignalWaiter] = {}
        # Signal handlers by name (None: the dynamic one), their running tasks, conditions.
        self._handlers: dict[str | None, Callable[..., object]] = {}
        self._handler_tasks: list[asyncio.Task[None]] = []
        self._conditions: list[_Condition] = []
        # Patches: each id's answer in this run, and the patch markers seen in history.
        self._patches: dict[str, bool] = {}
        self._history_patches: dict[str, int] = {}  # patch id -> its marker's seq
        self._patch_seqs: set[int] = set()
        self._markers: dict[int, Any] = {}
        self._marker_names: dict[int, str] = {}
        self._local: dict[int, _LocalActivity] = {}  # pending local activities, issue order
        self._paused = False  # the current activation waits for its local activities
        self._nondeterminism: NonDeterminismError | None = None  # found inside workflow code
        self._placeholders: list[_Placeholder] = []
        self._now = _EPOCH
        self._replaying = False
        self._cancel_requested = False
        self._finished = False
        self._broken: str | None = None
        self._last_run_started_id: int | None = None
        self._random = random.Random(run_id)
        # Set by ``replay_history``: every activation's commands, replayed ones included.
        self._record: list[list[Command]] | None = None
        self._queries = QueryHandlers()  # ctx.set_query_handler (sdk._queries)
        # Update handlers by name (fn, validator), and accepted updates waiting for theirs.
        self._update_handlers: dict[str, tuple[Callable[..., object],
                                               Callable[..., object] | None]] = {}
        self._waiting_updates: deque[tuple[str, str, list[Any]]] = deque()

    # ---- the worker's side ---------------------------------------------------------------

    @property
    def finished(self) -> bool:
        """The workflow code returned (or raised); its closing command has been issued."""
        return self._finished

    def set_query_handler(self, name: str, fn: Callable[..., Any] | None) -> None:
        self._queries.set(name, fn)

    def query(self, name: str, args: list[Any]) -> QueryAnswer:
        """Answer the query ``name`` from the workflow's state now; never raises, changes
        nothing (``sdk._queries``)."""
        return self._queries.answer(name, args)

    def validate_update(self, name: str, args: list[Any]) -> QueryAnswer:
        """Run the validator of the update handler ``name`` on ``args`` against the
        workflow's state now, changing nothing: ``result`` None if it accepts, else ``error``
        ``update_not_found`` or ``update_rejected``. Never raises."""
        entry = self._update_handlers.get(name)
        if entry is None:
            known = ", ".join(repr(n) for n in sorted(self._update_handlers)) or "none"
            return QueryAnswer(error=UPDATE_NOT_FOUND, message=(
                f"the workflow has no update handler {name!r} (handlers: {known})"))
        validator = entry[1]
        if validator is None:
            return QueryAnswer()
        return self._queries.validate(name, validator, args)

    @property
    def busy_since(self) -> float | None:
        """When (``time.monotonic()``) the workflow code's current step began, or None when
        no workflow code is running. Safe to read from another thread."""
        return self._loop.step_started

    def activate(self, events: list[WireEvent]) -> ActivationResult:
        """Apply the events of one workflow task and run the workflow as far as it can go."""
        return self._guarded(lambda: self._activate(events))

    def resolve_local_activities(
        self, outcomes: dict[int, LocalActivityOutcome]
    ) -> ActivationResult:
        """Hand the paused activation the outcomes of the local activities it returned (by
        seq) and run the workflow on; the result is like ``activate``'s (possibly paused on
        further local activities)."""
        return self._guarded(lambda: self._resume(outcomes))

    def _guarded(self, run: Callable[[], list[Command]]) -> ActivationResult:
        try:
            if self._broken is not None:
                raise _WorkerError(f"this workflow instance is unusable: {self._broken}")
            commands = run()
        except KeyboardInterrupt:
            raise
        except NonDeterminismError as exc:
            self._broken = f"non-determinism: {exc}"
            return ActivationResult(failure=failure_from_exception(exc), cause="nondeterminism")
        except _WorkflowCodeError as exc:
            self._broken = f"the workflow code raised {type(exc.error).__name__}: {exc.error}"
            return ActivationResult(failure=failure_from_exception(exc.error),
                                    cause="workflow_error")
        except BaseException as exc:
            self._broken = f"{type(exc).__name__}: {exc}"
            logger.debug("workflow activation failed", exc_info=True)
            return ActivationResult(failure=failure_from_exception(exc), cause="worker_error")
        if self._paused:
            return ActivationResult(
                local_activities=[la.request for la in self._local.values()])
        return ActivationResult(commands=encode_commands(commands))

    def _resume(self, outcomes: dict[int, LocalActivityOutcome]) -> list[Command]:
        if not self._paused:
            raise _WorkerError("no local activities are waiting for their outcomes")
        for la in list(self._local.values()):
            outcome = outcomes.get(la.request.seq)
            if outcome is None:
                raise _WorkerError(
                    f"no outcome for local activity seq={la.request.seq} "
                    f"({la.request.activity_type!r})"
                )
            self._resolve_local(la, _marker_data(la.request.activity_type, outcome))
        if self._settle():
            self._paused = False
            self._end_activation()
        return self._commands

    def _activate(self, events: list[WireEvent]) -> list[Command]:
        if not events:
            raise _WorkerError("an activation needs the events of its workflow task")
        if self._paused:
            raise _WorkerError("the workflow task's local activities are still running")
        if self._finished:
            raise _WorkerError("the workflow already finished; drop its instance")
        current: list[Command] = []
        for i, event in enumerate(events):
            event_id = event["event_id"]
            if event_id != self.next_event_id:
                raise _WorkerError(
                    f"event {event_id} where event {self.next_event_id} was expected"
                )
            self.next_event_id = event_id + 1
            event_type = event["event_type"]
            if event_type == E.WORKFLOW_TASK_STARTED:
                if self._on_task_started(events, i):
                    current = self._commands
            elif event_type in _JOB_EVENTS:
                self._end_block(event)
                self._jobs.append(event)
            elif event_type in _COMMAND_EVENTS:
                self._match(event)
            elif event_type in _UNMATCHED_COMMAND_EVENTS:
                pass
            elif event_type == E.WORKFLOW_TASK_COMPLETED:
                self._end_block(event)
                self._in_block = True
            elif event_type in (E.WORKFLOW_TASK_FAILED, E.WORKFLOW_TASK_TIMED_OUT):
                self._end_block(event)
                if event["attributes"].get("started_event_id") == self._last_run_started_id:
                    raise _WorkerError(
                        "the workflow task this instance ran last was "
                        f"{'failed' if event_type == E.WORKFLOW_TASK_FAILED else 'timed out'} "
                        "by the engine and its commands discarded; replay the full history"
                    )
            elif event_type == E.WORKFLOW_EXECUTION_STARTED:
                self._on_execution_started(event)
            elif event_type in _IGNORED_EVENTS:
                self._end_block(event)
            else:
                raise _WorkerError(f"unknown event type {event_type!r}")
        if self._in_block:
            self._end_block(None)
        return current

    # ---- history ---------------------------------------------------------------------------

    def _on_execution_started(self, event: WireEvent) -> None:
        self._end_block(event)
        if self._main is not None:
            raise _WorkerError("a second WorkflowExecutionStarted")
        self._started = dict(event["attributes"])
        self._main = self._loop.create_task(self._run_main(event["attributes"].get("input")))

    async def _run_main(self, input: Any) -> Any:
        fn = self.definition.fn
        return await fn(self._ctx, from_json(input, input_hint(fn)))

    def _on_task_started(self, events: list[WireEvent], i: int) -> bool:
        """Run the activation of the task started at ``events[i]``; True if it is current."""
        event = events[i]
        self._end_block(event)
        if self._paused:
            raise _WorkerError("a workflow task started while another waits for its local "
                               "activities")
        if self._main is None:
            raise _WorkerError("a workflow task before WorkflowExecutionStarted")
        outcome = None
        for j in range(i + 1, len(events)):
            if events[j]["event_type"] in _TASK_OUTCOMES:
                outcome = j
                break
        if outcome is not None and events[outcome]["event_type"] != E.WORKFLOW_TASK_COMPLETED:
            return False  # failed or timed out: the engine threw its commands away
        if outcome is not None:
            for k in range(outcome + 1, len(events)):
                later = events[k]
                if later["event_type"] == E.MARKER_RECORDED:
                    attributes = later["attributes"]
                    self._markers[attributes["seq"]] = attributes.get("data")
                    self._marker_names[attributes["seq"]] = str(attributes.get("marker_name"))
                    self._note_patch(later)
                elif (later["event_type"] not in _COMMAND_EVENTS
                      and later["event_type"] not in _UNMATCHED_COMMAND_EVENTS):
                    break
        self._run_activation(event, replaying=outcome is not None)
        self._last_run_started_id = event["event_id"]
        return outcome is None

    def _note_patch(self, event: WireEvent) -> bool:
        """Remember ``event`` if it is a patch marker (whose seq later calls skip)."""
        attributes = event["attributes"]
        if (event["event_type"] != E.MARKER_RECORDED
                or attributes.get("marker_name") != PATCH_MARKER):
            return False
        seq = int(attributes.get("seq") or 0)
        self._patch_seqs.add(seq)
        data = attributes.get("data")
        patch_id = data.get("patch_id") if isinstance(data, dict) else None
        if isinstance(patch_id, str):
            self._history_patches.setdefault(patch_id, seq)
        return True

    def _match(self, event: WireEvent) -> None:
        if self._note_patch(event):
            return  # never matched: see the module's docstring
        kind, name_key = _COMMAND_EVENTS[event["event_type"]]
        attributes = event["attributes"]
        seq = int(attributes.get("seq") or 0)
        name = str(attributes.get(name_key) or "") if name_key else ""
        had = f"{event['event_type']}{_describe(seq, name)} (event {event['event_id']})"
        if not self._unmatched:
            raise NonDeterminismError(
                f"history has {had}, but the workflow code issued no such command"
            )
        issued = self._unmatched.popleft()
        if issued != (kind, seq, name):
            raise NonDeterminismError(
                f"history has {had}, but the workflow code issued "
                f"{issued[0]}{_describe(issued[1], issued[2])}"
            )

    def _end_block(self, event: WireEvent | None) -> None:
        """The command events of a completed task are over: all its commands must be there."""
        if not self._in_block:
            return
        self._in_block = False
        if self._unmatched:
            kind, seq, name = self._unmatched[0]
            where = ("the end of the history" if event is None
                     else f"{event['event_type']} (event {event['event_id']})")
            raise NonDeterminismError(
                f"the workflow code issued {kind}{_describe(seq, name)}, but history does not "
                f"hold it: that workflow task's commands end before {where}"
            )

    # ---- activations -----------------------------------------------------------------------

    def _run_activation(self, event: WireEvent, *, replaying: bool) -> None:
        self._replaying = replaying
        self._now = _parse_time(event["timestamp"])
        self._loop._time = self._now.timestamp()
        self._commands = []
        jobs, self._jobs = self._jobs, []
        for job in jobs:
            self._apply_job(job)
        if self._settle():
            self._end_activation()
        else:
            self._paused = True

    def _settle(self) -> bool:
        """Run the loop until nothing is ready. False: local activities are pending (a current
        task pauses on them); a replayed task answers them from its markers and runs on."""
        while True:
            self._loop.run_ready()
            error = self._loop.callback_error
            if error is not None:
                raise _WorkerError(f"a workflow event-loop callback raised: {error!r}") from error
            if self._nondeterminism is not None:
                raise self._nondeterminism
            if self._conditions and self._check_conditions():
                continue
            if not self._local:
                return True
            if not self._replaying:
                return False
            for la in list(self._local.values()):
                seq = la.request.seq
                if self._marker_names.get(seq) != LOCAL_ACTIVITY_MARKER:
                    raise NonDeterminismError(
                        f"the workflow code ran local activity {la.request.activity_type!r} "
                        f"(seq={seq}), but that workflow task recorded no local_activity "
                        f"marker for it"
                    )
                self._resolve_local(la, self._markers.get(seq))

    def _end_activation(self) -> None:
        if self._placeholders:
            if any(not p.filled for p in self._placeholders):
                raise _WorkerError(
                    "a side_effect function was still running when the workflow task ended: "
                    "side effects must not wait on durable calls"
                )
            self._placeholders.clear()
        if self._handler_tasks:
            failed = next((t for t in self._handler_tasks
                           if t.done() and not t.cancelled() and t.exception() is not None),
                          None)
            self._handler_tasks = [t for t in self._handler_tasks if not t.done()]
            if failed is not None and not self._finished:
                self._finish(failed)
        main = self._main
        if main is not None and main.done() and not self._finished:
            self._finish(main)
        elif self._continue_as_new is not None and self._continue_as_new not in self._commands:
            # The engine deferred the continue-as-new for news: the code asks for it again.
            self._issue(self._continue_as_new, None)
        self._markers.clear()
        self._marker_names.clear()
        if self._record is not None:
            self._record.append(self._commands)

    def _apply_job(self, event: WireEvent) -> None:
        event_type = event["event_type"]
        attributes = event["attributes"]
        if event_type == E.WORKFLOW_EXECUTION_SIGNALED:
            self._deliver(Signal(attributes["signal_name"], attributes.get("input")))
            return
        if event_type == E.WORKFLOW_EXECUTION_CANCEL_REQUESTED:
            self._cancel_requested = True
            if self._main is not None and not self._main.done():
                self._main.cancel("the workflow was asked to cancel")
            return
        if event_type in _CHILD_JOB_EVENTS:
            self._apply_child_job(event_type, attributes)
            return
        if event_type == E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            self._accept_update(str(attributes["update_id"]), str(attributes["update_name"]),
                                list(attributes.get("args") or []))
            return
        seq = attributes["seq"]
        future = self._pending.pop(seq, None)
        if event_type == E.TIMER_FIRED:
            waiter = self._timer_waiters.pop(seq, None)
            if waiter is not None and not waiter.future.done():
                self._waiters.remove(waiter)
                waiter.future.set_exception(TimeoutError("no matching signal before the timeout"))
            if future is not None and not future.done():
                future.set_result(None)
            return
        if future is None or future.done():
            return  # cancelled by the workflow: the outcome no longer matters
        activity_type = getattr(future, "activity_type", None)
        if event_type == E.ACTIVITY_TASK_COMPLETED:
            future.set_result(attributes.get("result"))
        elif event_type == E.ACTIVITY_TASK_FAILED:
            future.set_exception(ActivityError(
                attributes.get("failure") or {"type": "Error", "message": "activity failed"},
                attempt=attributes.get("attempt"), activity_type=activity_type, seq=seq,
            ))
        elif event_type == E.ACTIVITY_TASK_TIMED_OUT:
            timeout_type = attributes.get("timeout_type")
            failure = attributes.get("failure") or {
                "type": "ActivityTimeout", "message": f"activity timed out ({timeout_type})",
            }
            future.set_exception(ActivityError(
                failure, attempt=attributes.get("attempt"), timeout_type=timeout_type,
                activity_type=activity_type, seq=seq,
            ))
        elif isinstance(future, ActivityHandle) and future.cancel_requested:
            future.cancel_completed()  # wait_cancellation_completed: the wait is over
        else:  # ActivityTaskCanceled without the workflow asking (it cancels handles itself)
            future.set_exception(ActivityError(
                {"type": "ActivityCanceled", "message": "the activity was canceled",
                 "details": attributes.get("details")},
                activity_type=activity_type, seq=seq,
            ))

    def _finish(self, main: asyncio.Task[Any]) -> None:
        command: CompleteWorkflow | FailWorkflow | CancelWorkflow | ContinueAsNew
        if not main.cancelled() and isinstance(exc := main.exception(), ContinueAsNewError):
            self._continue_as_new = ContinueAsNew(
                input=exc.input, workflow_type=exc.workflow_type, task_queue=exc.task_queue)
            self._issue(self._continue_as_new, None)
            self._finished = True
            return
        if main.cancelled():
            if self._cancel_requested:
                command = CancelWorkflow(details=None)
            else:
                command = FailWorkflow(failure={
                    "type": "CancelledError", "message": "the workflow's main task was "
                    "cancelled, but no cancel was requested", "stack": "", "details": None,
                    "non_retryable": False,
                })
        elif (exc := main.exception()) is not None:
            command = FailWorkflow(failure=failure_from_exception(self._run_failure(exc)))
        else:
            try:
                result = to_json(main.result())
                json.dumps(result)
            except (TypeError, ValueError) as err:
                bad = TypeError(f"the workflow's result is not JSON-serializable: {err}")
                command = FailWorkflow(failure=failure_from_exception(self._run_failure(bad)))
            else:
                command = CompleteWorkflow(result=result)
        self._issue(command, (command.kind, 0, ""))
        self._finished = True

    def _run_failure(self, exc: BaseException) -> BaseException:
        """``exc``, if it fails the run; else the workflow task fails (raised out of it). A
        payload that does not fit the workflow's type hints (``PayloadConversionError``) is a
        bug of the code, as in Temporal: it fails the task, so a fixed deploy resumes the run."""
        if isinstance(exc, self._run_failures) and not isinstance(exc, PayloadConversionError):
            return exc
        raise _WorkflowCodeError(exc) from exc

    # ---- the runtime side of WorkflowContext ---------------------------------------------

    @property
    def info(self) -> WorkflowInfo:
        parent = self._started.get("parent") or {}
        # ``attempt``: the run's attempt under a child's retry policy (1 unless retried), as
        # Temporal's; the same on every replay.
        return WorkflowInfo(self.workflow_id, self.run_id, self.workflow_type, self.task_queue,
                            int(self._started.get("attempt") or 1),
                            history_length=max(self.history_length, self.next_event_id - 1),
                            history_size_bytes=self.history_size_bytes,
                            continued_from_run_id=self._started.get("continued_from_run_id"),
                            parent_workflow_id=parent.get("workflow_id"),
                            parent_run_id=parent.get("run_id"))

    @property
    def is_replaying(self) -> bool:
        return self._replaying

    def now(self) -> datetime:
        return self._now

    def random(self) -> random.Random:
        self._queries.check("draw from ctx.random()")
        return self._random

    def _issue(self, command: Command, key: _Key | None) -> None:
        self._queries.check(f"issue a {command.kind} command")
        self._commands.append(command)
        if key is not None:
            self._unmatched.append(key)

    def _next_seq(self) -> int:
        self._queries.check("make a durable call")
        self._seq += 1
        while self._seq in self._patch_seqs:  # a patch marker's in history, called or not
            self._seq += 1
        return self._seq

    def schedule_activity(self, command: Callable[[int], ScheduleActivity]) -> ActivityHandle:
        seq = self._next_seq()
        activity = command(seq)
        activity_type = activity.activity_type
        handle = ActivityHandle(loop=self._loop, seq=seq, activity_type=activity_type,
                                on_cancel=self._cancel_activity)
        self._pending[seq] = handle
        self._issue(activity, (activity.kind, seq, activity_type))
        return handle

    def _cancel_activity(self, future: DurableFuture) -> None:
        """Cancelling an activity's handle, by its cancellation type: ``try_cancel`` asks
        the engine and forgets the activity; ``wait_cancellation_completed`` asks and keeps
        waiting for its outcome; ``abandon`` only forgets it."""
        kind = getattr(future, "cancellation_type", "try_cancel")
        if kind != "wait_cancellation_completed":
            self._pending.pop(future.seq, None)
        if kind != "abandon":
            self._issue(RequestCancelActivity(seq=future.seq), None)

    def start_timer(self, duration_ms: int) -> DurableFuture:
        seq = self._next_seq()
        timer = DurableFuture(loop=self._loop, seq=seq, on_cancel=self._cancel_timer)
        self._pending[seq] = timer
        self._issue(StartTimer(seq=seq, duration_ms=duration_ms), ("start_timer", seq, ""))
        return timer

    def _cancel_timer(self, future: DurableFuture) -> None:
        self._pending.pop(future.seq, None)
        self._timer_waiters.pop(future.seq, None)
        self._issue(CancelTimer(seq=future.seq), None)

    def _deliver(self, signal: Signal) -> None:
        handler = self._handlers.get(signal.name)
        if handler is not None:
            self._run_handler(handler, signal.input)
            return
        dynamic = self._handlers.get(None)
        if dynamic is not None:
            self._run_handler(dynamic, signal.name, signal.input)
            return
        for i, waiter in enumerate(self._waiters):
            if waiter.name is None or waiter.name == signal.name:
                del self._waiters[i]
                waiter.future.set_result(signal)
                return
        self._signals.append(signal)

    async def wait_for_signal(self, name: str | None, timeout_ms: int | None) -> Signal:
        for i, signal in enumerate(self._signals):
            if name is None or signal.name == name:
                del self._signals[i]
                return signal
        future: asyncio.Future[Signal] = self._loop.create_future()
        waiter = _SignalWaiter(name, future)
        self._waiters.append(waiter)
        timer = None
        if timeout_ms is not None:
            timer = self.start_timer(timeout_ms)
            self._timer_waiters[timer.seq] = waiter
        try:
            return await future
        finally:
            if waiter in self._waiters:
                self._waiters.remove(waiter)
            if timer is not None:
                self._timer_waiters.pop(timer.seq, None)
                if not timer.done():
                    timer.cancel()

    # ---- signal handlers and conditions --------------------------------------------------

    def set_signal_handler(self, name: str | None, fn: Callable[..., object] | None) -> None:
        if fn is None:
            self._handlers.pop(name, None)
            return
        self._handlers[name] = fn
        kept: deque[Signal] = deque()
        for signal in self._signals:  # none of these has a handler yet: they waited for one
            if name is None:
                self._run_handler(fn, signal.name, signal.input)
            elif signal.name == name:
                self._run_handler(fn, signal.input)
            else:
                kept.append(signal)
        self._signals = kept

    def _run_handler(self, fn: Callable[..., object], *args: Any) -> None:
        self._handler_tasks.append(self._loop.create_task(_call_handler(fn, args)))

    # ---- updates ---------------------------------------------------------------------------

    def set_update_handler(self, name: str, fn: Callable[..., object] | None,
                           validator: Callable[..., object] | None) -> None:
        self._queries.check("set an update handler")
        if fn is None:
            self._update_handlers.pop(name, None)
            return
        self._update_handlers[name] = (fn, validator)
        kept: deque[tuple[str, str, list[Any]]] = deque()
        for update in self._waiting_updates:  # accepted before their handler was set
            if update[1] == name:
                self._run_update(fn, *update)
            else:
                kept.append(update)
        self._waiting_updates = kept

    def _accept_update(self, update_id: str, name: str, args: list[Any]) -> None:
        entry = self._update_handlers.get(name)
        if entry is None:  # removed since its validation, or set later: it waits
            self._waiting_updates.append((update_id, name, args))
            return
        self._run_update(entry[0], update_id, name, args)

    def _run_update(self, fn: Callable[..., object], update_id: str, name: str,
                    args: list[Any]) -> None:
        self._handler_tasks.append(self._loop.create_task(self._update(fn, update_id, args)))

    async def _update(self, fn: Callable[..., object], update_id: str,
                      args: list[Any]) -> None:
        """Run an update's handler and complete the update with what it returned, or fail
        the update with an exception that would fail the run (an ``ApplicationError``, an
        ``ActivityError``...). Any other exception is a bug: it escapes, and fails the
        workflow task like the workflow function's own."""
        key: _Key = ("complete_update", 0, update_id)
        try:
            value = fn(*args)
            if inspect.isawaitable(value):
                value = await value
            result = to_json(value)
            json.dumps(result)
        except BaseException as exc:
            if (isinstance(exc, self._run_failures)
                    and not isinstance(exc, PayloadConversionError | ContinueAsNewError)):
                self._issue(CompleteUpdate(update_id=update_id,
                                           failure=failure_from_exception(exc)), key)
                return
            raise
        self._issue(CompleteUpdate(update_id=update_id, result=result), key)

    async def wait_condition(self, fn: Callable[[], object], timeout_ms: int | None) -> None:
        if fn():
            return
        condition = _Condition(fn, self._loop.create_future())
        self._conditions.append(condition)
        timer = None
        if timeout_ms is not None:
            timer = self.start_timer(timeout_ms)
            timer.add_done_callback(lambda t: self._condition_timed_out(condition, t))
        try:
            await condition.future
        finally:
            if condition in self._conditions:
                self._conditions.remove(condition)
            if timer is not None and not timer.done():
                timer.cancel()

    def _condition_timed_out(self, condition: _Condition, timer: asyncio.Future[Any]) -> None:
        if timer.cancelled() or condition.future.done():
            return
        if condition in self._conditions:
            self._conditions.remove(condition)
        try:
            met = condition.fn()
        except Exception as exc:
            condition.future.set_exception(exc)
            return
        if met:
            condition.future.set_result(None)
        else:
            condition.future.set_exception(
                TimeoutError("the condition was not met before the timeout"))

    def _check_conditions(self) -> bool:
        """Resolve every waiting condition that holds now; True if any was resolved."""
        resolved = False
        for condition in list(self._conditions):
            if condition.future.done():
                self._conditions.remove(condition)
                continue
            try:
                met = condition.fn()
            except Exception as exc:
                self._conditions.remove(condition)
                condition.future.set_exception(exc)
                resolved = True
                continue
            if met:
                self._conditions.remove(condition)
                condition.future.set_result(None)
                resolved = True
        return resolved

    # ---- versioning ------------------------------------------------------------------------

    def patched(self, patch_id: str, *, deprecated: bool) -> bool:
        known = self._patches.get(patch_id)
        if known is not None:
            return known
        data = {"patch_id": patch_id, "deprecated": deprecated}
        if self._replaying:
            seq = self._history_patches.get(patch_id)
            use = seq is not None
        else:
            seq, use = self._next_seq(), True
        if seq is not None:
            self._issue(RecordMarker(seq=seq, marker_name=PATCH_MARKER, data=data), None)
        self._patches[patch_id] = use
        return use

    async def side_effect(self, fn: Callable[[], Any]) -> Any:
        seq = self._next_seq()
        key: _Key = ("record_marker", seq, "side_effect")
        if self._replaying and seq in self._markers:
            value = self._markers[seq]
            self._issue(RecordMarker(seq=seq, marker_name="side_effect", data=value), key)
            return value
        # First run (or a replay of a side effect that raised): call fn. The command takes
        # its place in order now, so commands stay in seq order even if fn awaits.
        placeholder = _Placeholder(RecordMarker(seq=seq, marker_name="side_effect"), key)
        self._placeholders.append(placeholder)
        self._issue(placeholder.command, key)
        try:
            value = fn()
            if inspect.isawaitable(value):
                value = await value
            value = json.loads(json.dumps(value))
        except BaseException:
            # No value, no marker: take the command back (seq gaps are allowed).
            self._placeholders.remove(placeholder)
            _replace_identical(self._commands, placeholder.command, None)
            if key in self._unmatched:
                self._unmatched.remove(key)
            raise
        _replace_identical(self._commands, placeholder.command,
                           replace(placeholder.command, data=value))
        placeholder.filled = True
        return value

    def local_activity(self, request: Callable[[int], LocalActivityRequest]) -> ActivityHandle:
        seq = self._next_seq()
        req = request(seq)
        key: _Key = ("record_marker", seq, LOCAL_ACTIVITY_MARKER)
        handle = ActivityHandle(loop=self._loop, seq=seq, activity_type=req.activity_type,
                                on_cancel=self._cancel_local)
        # The marker takes its place in order now; its data comes with the outcome.
        command = RecordMarker(seq=seq, marker_name=LOCAL_ACTIVITY_MARKER)
        self._local[seq] = _LocalActivity(req, handle, command, key)
        self._issue(command, key)
        return handle

    def _cancel_local(self, future: DurableFuture) -> None:
        """Cancelled before its outcome: no marker (the worker's outcome is ignored)."""
        la = self._local.pop(future.seq, None)
        if la is None:
            return
        _replace_identical(self._commands, la.command, None)
        if la.key in self._unmatched:
            self._unmatched.remove(la.key)

    def _resolve_local(self, la: _LocalActivity, data: Any) -> None:
        request = la.request
        del self._local[request.seq]
        if not isinstance(data, dict):
            raise _WorkerError(f"the local_activity marker of seq={request.seq} holds no object")
        recorded = data.get("activity_type")
        if recorded != request.activity_type:
            # Raised out of activate (not into the workflow code, which could catch it).
            self._nondeterminism = NonDeterminismError(
                f"history has local activity {recorded!r} at seq={request.seq}, but the "
                f"workflow code ran {request.activity_type!r}"
            )
            return
        _replace_identical(self._commands, la.command, replace(la.command, data=data))
        if la.handle.done():
            return
        failure = data.get("failure")
        if failure is None:
            la.handle.set_result(data.get("result"))
            return
        la.handle.set_exception(ActivityError(
            failure, attempt=data.get("attempts"), timeout_type=data.get("timeout_type"),
            activity_type=request.activity_type, seq=request.seq,
        ))


    # ---- child workflows ------------------------------------------------------------------

    def start_child_workflow(self, command: Callable[[int], StartChildWorkflow],
                             cancellation_type: str) -> ChildWorkflowHandle:
        seq = self._next_seq()
        start = command(seq)
        handle = ChildWorkflowHandle(loop=self._loop, seq=seq, workflow_id=start.workflow_id,
                                     workflow_type=start.workflow_type, runtime=self,
                                     cancellation_type=cancellation_type,
                                     on_cancel=self._cancel_child_handle)
        self._pending[seq] = handle
        self._issue(start, (start.kind, seq, start.workflow_type))
        return handle

    def _cancel_child_handle(self, future: DurableFuture) -> None:
        """The handle is cancelled now (``try_cancel``, ``abandon``): stop routing to it."""
        assert isinstance(future, ChildWorkflowHandle)
        self._pending.pop(future.seq, None)
        if not future.started.done():
            future.started.cancel()
        if future.cancellation_type == "try_cancel":
            self.cancel_child(future)

    def cancel_child(self, handle: ChildWorkflowHandle) -> None:
        self._issue(RequestCancelExternalWorkflow(seq=self._next_seq(),
                                                  workflow_id=handle.workflow_id), None)

    def signal_child(self, handle: ChildWorkflowHandle, name: str,
                     input: Any) -> DurableFuture:
        seq = self._next_seq()
        future = DurableFuture(loop=self._loop, seq=seq)
        self._pending[seq] = future
        self._issue(SignalExternalWorkflow(seq=seq, workflow_id=handle.workflow_id,
                                           signal_name=name, input=input),
                    ("signal_external_workflow", seq, name))
        return future

    def _apply_child_job(self, event_type: str, attributes: dict[str, Any]) -> None:
        seq = attributes["seq"]
        future = self._pending.get(seq)
        if event_type == E.CHILD_WORKFLOW_EXECUTION_STARTED:
            if isinstance(future, ChildWorkflowHandle):
                future.run_id = attributes.get("run_id")
                if not future.started.done():
                    future.started.set_result(str(future.run_id))
            return
        self._pending.pop(seq, None)
        if future is None or future.done():
            return  # cancelled by the workflow: the outcome no longer matters
        workflow_id = str(attributes.get("workflow_id") or "")
        if event_type == E.EXTERNAL_WORKFLOW_EXECUTION_SIGNALED:
            future.set_result(None)
            return
        if event_type == E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED:
            future.set_exception(ChildWorkflowError("signal_failed", {
                "type": str(attributes.get("cause")), "message": "the signal was not "
                "delivered: the child workflow has closed"}, workflow_id=workflow_id))
            return
        assert isinstance(future, ChildWorkflowHandle)
        if event_type == E.CHILD_WORKFLOW_EXECUTION_COMPLETED:
            future.set_result(attributes.get("result"))
            return
        if event_type == E.CHILD_WORKFLOW_EXECUTION_CANCELED and future.cancellation_type == (
                "wait_cancellation_completed") and future._cancel_asked:
            DurableFuture.cancel(future, "the child workflow was canceled")
            return
        error = self._child_error(event_type, attributes, future)
        if not future.started.done():
            future.started.set_exception(error)
        future.set_exception(error)

    @staticmethod
    def _child_error(event_type: str, attributes: dict[str, Any],
                     handle: ChildWorkflowHandle) -> ChildWorkflowError:
        if event_type == E.START_CHILD_WORKFLOW_EXECUTION_FAILED:
            status, cause = "start_failed", {
                "type": "WorkflowAlreadyStarted",
                "message": f"workflow {handle.workflow_id!r} already has an open run"}
        else:
            status = _CHILD_STATUS[EventType(event_type)]
            cause = attributes.get("failure") or {
                "type": {"canceled": "Canceled", "terminated": "Terminated",
                         "timed_out": "TimedOut"}.get(status, "Error"),
                "message": attributes.get("reason") or f"the child workflow {status}",
                "details": attributes.get("details")}
        return ChildWorkflowError(status, cause, workflow_id=handle.workflow_id,
                                  run_id=attributes.get("run_id") or handle.run_id,
                                  workflow_type=handle.workflow_type)


async def _call_handler(fn: Callable[..., object], args: tuple[Any, ...]) -> None:
    """Run a signal handler, sync or async, as a task of the workflow's loop."""
    result = fn(*args)
    if inspect.isawaitable(result):
        await result


def _marker_data(activity_type: str, outcome: LocalActivityOutcome) -> dict[str, Any]:
    """A local activity's marker data (``sdk.protocol.LOCAL_ACTIVITY_MARKER``)."""
    if outcome.failure is None:
        return {"activity_type": activity_type, "attempts": outcome.attempts,
                "result": json.loads(json.dumps(outcome.result))}
    return {"activity_type": activity_type, "attempts": outcome.attempts,
            "failure": normalize_failure(outcome.failure), "timeout_type": outcome.timeout_type}


def _replace_identical(items: list[Command], item: Command, new: Command | None) -> None:
    """Replace ``item`` itself (not an equal command) in ``items`` by ``new``, or drop it."""
    for i in range(len(items) - 1, -1, -1):
        if items[i] is item:
            if new is None:
                del items[i]
            else:
                items[i] = new
            return


def _describe(seq: int, name: str) -> str:
    if seq == 0:
        return ""
    return f"(seq={seq}, {name!r})" if name else f"(seq={seq})"


def _parse_time(value: Any) -> datetime:
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    if moment.tzinfo is None:
        return moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


@dataclass(slots=True)
class ReplayResult:
    """What replaying a history produced: each activation's commands, or the failure."""

    commands: list[list[WireCommand]] = field(default_factory=list)
    failure: WireFailure | None = None
    cause: str | None = None

    @property
    def final_command(self) -> WireCommand | None:
        """The last command the code issued (a closing one if the run ended in history)."""
        for batch in reversed(self.commands):
            if batch:
                return batch[-1]
        return None


def replay_history(definition: WorkflowDefinition, events: list[WireEvent], *,
                   workflow_id: str, run_id: str, task_queue: str | None = None
                   ) -> ReplayResult:
    """Replay a whole history (open or closed) in a fresh instance, e.g. to check that new
    workflow code still matches old runs."""
    started = events[0]["attributes"] if events else {}
    instance = WorkflowInstance(
        definition, workflow_id=workflow_id, run_id=run_id,
        workflow_type=str(started.get("workflow_type") or definition.name),
        task_queue=task_queue or str(started.get("task_queue") or ""),
    )
    record: list[list[Command]] = []
    instance._record = record
    result = instance.activate(events)
    return ReplayResult(commands=[encode_commands(batch) for batch in record],
                        failure=result.failure, cause=result.cause)
