"""Deciding transitions: from a state and an input to the events to append and the effects.

Every function here is pure. It takes the current ``ExecutionState`` and returns a
``Transition`` holding the new events (numbered from the state's ``next_event_id`` and
stamped with ``now``), the state after them and the effects they imply outside the history
(``effects``: task and timer rows, closing the run, starting a successor), or raises
``Rejected`` and decides nothing. The engine's services lock the execution row, call one of
these with what they read from the rows (which activities are leased, an attempt's options),
and execute what it returns through the stores.

Rules every function keeps: nothing is appended to a closed run; event ids stay dense;
whenever an input event reaches an open run with no workflow task, a workflow task is
scheduled in the same transition; the effects are net (see ``rows``).

Some transitions append no event and only have effects: an activity attempt that failed and
is retried (``RetryActivity``), a back-off that ended (``ReadyActivity``). The history holds
only an activity's final outcome, so retries do not grow it.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from . import commands as c
from . import retry
from .effects import (
    ActOnChild,
    Effect,
    ReadyActivity,
    RequestActivityCancel,
    RetryActivity,
    StartChild,
    StartSuccessor,
    TaskState,
    TimerKind,
)
from .events import CLOSING_EVENTS, Event, EventType
from .rows import (
    WORKFLOW_TASK_RETRY_INITIAL_MS,
    WORKFLOW_TASK_RETRY_MAX_MS,
    imply,
    workflow_task_retry_delay_ms,
)
from .state import ExecutionState, apply

__all__ = [
    "WORKFLOW_TASK_RETRY_INITIAL_MS", "WORKFLOW_TASK_RETRY_MAX_MS", "Rejected", "Transition",
    "retry_delay", "workflow_task_retry_delay_ms",
]

E = EventType


class Rejected(Exception):
    """The transition is refused; nothing was decided. ``code`` is stable and machine-read."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass
class Transition:
    """What one transition decided: the state after it, the events to append (all stamped
    ``now``) and the effects outside the history they imply (kept net as events are added)."""

    state: ExecutionState
    now: datetime
    events: list[Event] = field(default_factory=list)
    effects: list[Effect] = field(default_factory=list)

    def add(self, event_type: EventType, **attributes: Any) -> Event:
        event = Event(self.state.next_event_id, event_type, self.now, attributes)
        before = self.state
        self.state = apply(self.state, event)
        self.events.append(event)
        imply(self.effects, event, self.state)
        if event_type in CLOSING_EVENTS:
            self.effects.extend(_parent_close_policy(before))
        return event

    def extend(self, step: Transition) -> None:
        """Append ``step``, a transition decided on this one's state whose effects need no
        netting against this one's (starting a workflow task just scheduled)."""
        self.events.extend(step.events)
        self.effects.extend(step.effects)
        self.state = step.state

    def schedule_workflow_task_if_needed(self) -> None:
        """Schedule a workflow task when the run has news and none is in flight."""
        s = self.state
        if s.is_open and s.workflow_task is None and s.workflow_task_needed:
            self.add(E.WORKFLOW_TASK_SCHEDULED, task_queue=s.task_queue,
                     attempt=s.workflow_task_attempt)


def _open(state: ExecutionState, now: datetime) -> Transition:
    if not state.is_open:
        raise Rejected("run_closed", f"the run is {state.status.value}")
    return Transition(state, now)


def _needs_task(t: Transition) -> None:
    """After an input event: a workflow task is due unless one is already scheduled."""
    if t.state.workflow_task is None:
        t.state = replace(t.state, workflow_task_needed=True)
    t.schedule_workflow_task_if_needed()


def start(*, workflow_type: str, task_queue: str, input: Any, now: datetime,
          execution_timeout_ms: int | None = None, parent: dict[str, Any] | None = None,
          continued_from_run_id: str | None = None, start_signal: str | None = None,
          start_signal_input: Any = None, retry_policy: c.RetryPolicy | None = None,
          attempt: int = 1, first_workflow_task_backoff_ms: int | None = None) -> Transition:
    """A new run. ``start_signal``: a signal-with-start's signal, recorded right after the
    start (before the first workflow task is scheduled, as Temporal does), so the run's
    first workflow task sees it.

    ``retry_policy``: a failed run of it is started again (``attempt`` counts the runs);
    ``first_workflow_task_backoff_ms``: a retry's back-off, waited (a workflow task retry
    timer) before the first workflow task is scheduled."""
    t = Transition(ExecutionState(), now)
    retry_attributes: dict[str, Any] = {}
    if retry_policy is not None:
        retry_attributes = {"retry_policy": retry_policy.to_dict(), "attempt": attempt}
        if first_workflow_task_backoff_ms:
            retry_attributes["first_workflow_task_backoff_ms"] = first_workflow_task_backoff_ms
    t.add(E.WORKFLOW_EXECUTION_STARTED, workflow_type=workflow_type, task_queue=task_queue,
          input=input, execution_timeout_ms=execution_timeout_ms, parent=parent,
          continued_from_run_id=continued_from_run_id, **retry_attributes)
    if start_signal is not None:
        t.add(E.WORKFLOW_EXECUTION_SIGNALED, signal_name=start_signal, input=start_signal_input)
    if not first_workflow_task_backoff_ms:
        t.add(E.WORKFLOW_TASK_SCHEDULED, task_queue=task_queue, attempt=1)
    return t


def signal(state: ExecutionState, *, name: str, input: Any, now: datetime) -> Transition:
    t = _open(state, now)
    t.add(E.WORKFLOW_EXECUTION_SIGNALED, signal_name=name, input=input)
    _needs_task(t)
    return t


def accept_update(state: ExecutionState, *, update_id: str, name: str, args: list[Any],
                  now: datetime) -> Transition:
    """An update passed its validator (on a worker, before this transition): record it for
    the workflow's handler to run, like a signal. An update already pending under
    ``update_id`` records nothing (the caller waits for the one accepted before)."""
    t = _open(state, now)
    if update_id in state.updates:
        return t
    t.add(E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED, update_id=update_id, update_name=name,
          args=list(args))
    _needs_task(t)
    return t


def request_cancel(state: ExecutionState, *, reason: str | None, now: datetime) -> Transition:
    t = _open(state, now)
    if state.cancel_requested:
        return t  # asked before: nothing new to record
    t.add(E.WORKFLOW_EXECUTION_CANCEL_REQUESTED, reason=reason)
    _needs_task(t)
    return t


def terminate(state: ExecutionState, *, reason: str | None, now: datetime) -> Transition:
    t = _open(state, now)
    t.add(E.WORKFLOW_EXECUTION_TERMINATED, reason=reason)
    return t


def fail_history_too_large(state: ExecutionState, *, events: int, size_bytes: int,
                           max_events: int, max_bytes: int, now: datetime) -> Transition:
    """The run's history passed ``max_events`` events or ``max_bytes`` bytes: it fails, with
    the cause ``history_too_large``, instead of growing on."""
    t = _open(state, now)
    t.add(E.WORKFLOW_EXECUTION_FAILED, failure={
        "type": "HistoryTooLarge", "non_retryable": True,
        "message": (f"the history has {events} events and {size_bytes} bytes, past the "
                    f"limit of {max_events} events or {max_bytes} bytes: continue a long "
                    "workflow as new before it grows this far"),
        "details": {"cause": "history_too_large", "history_length": events,
                    "history_size_bytes": size_bytes}})
    return t


WORKFLOW_TIMEOUT_FAILURE = {"type": "TimeoutError", "message": "workflow execution timeout"}


def time_out_workflow(state: ExecutionState, *, now: datetime,
                      started: Mapping[str, Any] | None = None,
                      successor_run_id: str | None = None) -> Transition:
    """The run's execution timeout expired. A run started with a retry policy (``started``:
    its WorkflowExecutionStarted attributes) is retried as after a failure, as Temporal
    retries a run that timed out: the event names ``successor_run_id``."""
    t = _open(state, now)
    delay = (None if started is None or successor_run_id is None
             else retry_delay(started, WORKFLOW_TIMEOUT_FAILURE, now=now))
    if delay is None or started is None or successor_run_id is None:
        t.add(E.WORKFLOW_EXECUTION_TIMED_OUT)
        return t
    t.add(E.WORKFLOW_EXECUTION_TIMED_OUT, new_execution_run_id=successor_run_id)
    _retry_run(t, started, successor_run_id, started.get("execution_timeout_ms"), delay)
    return t


def _current_task(state: ExecutionState, scheduled_event_id: int, *, started: bool) -> None:
    wt = state.workflow_task
    if wt is None or wt.scheduled_event_id != scheduled_event_id:
        raise Rejected("stale_task", "that workflow task is no longer current")
    if started != (wt.started_event_id is not None):
        raise Rejected("stale_task", "that workflow task is not in the expected state")


def start_workflow_task(state: ExecutionState, *, scheduled_event_id: int, worker: str,
                        now: datetime) -> Transition:
    t = _open(state, now)
    _current_task(state, scheduled_event_id, started=False)
    assert state.workflow_task is not None
    t.add(E.WORKFLOW_TASK_STARTED, scheduled_event_id=scheduled_event_id,
          attempt=state.workflow_task.attempt, worker=worker)
    return t


def fail_workflow_task(state: ExecutionState, *, scheduled_event_id: int, cause: str,
                       failure: dict[str, Any], now: datetime) -> Transition:
    """Record a failed workflow task. Its retry is scheduled later, by a back-off timer."""
    t = _open(state, now)
    _current_task(state, scheduled_event_id, started=True)
    assert state.workflow_task is not None
    t.add(E.WORKFLOW_TASK_FAILED, scheduled_event_id=scheduled_event_id,
          started_event_id=state.workflow_task.started_event_id, cause=cause,
          failure=c.normalize_failure(failure))
    return t


def time_out_workflow_task(state: ExecutionState, *, scheduled_event_id: int,
                           now: datetime) -> Transition:
    """A started workflow task whose worker went silent: record it, schedule it again now."""
    t = _open(state, now)
    _current_task(state, scheduled_event_id, started=True)
    assert state.workflow_task is not None
    t.add(E.WORKFLOW_TASK_TIMED_OUT, scheduled_event_id=scheduled_event_id,
          started_event_id=state.workflow_task.started_event_id)
    t.schedule_workflow_task_if_needed()
    return t


def retry_workflow_task(state: ExecutionState, *, now: datetime) -> Transition:
    """The back-off after a failed workflow task is over: schedule the next attempt."""
    t = _open(state, now)
    t.schedule_workflow_task_if_needed()
    return t


def check_closing(commands: Sequence[c.Command]) -> None:
    """A closing command, if any, must be the last and only one."""
    terminal = [cmd for cmd in commands if isinstance(cmd, c.TERMINAL_COMMANDS)]
    if terminal and (len(terminal) > 1 or commands[-1] is not terminal[0]):
        raise Rejected("invalid_command", "a closing command must be the last and only one")


def complete_workflow_task(state: ExecutionState, *, scheduled_event_id: int,
                           commands: Sequence[c.Command], worker: str, now: datetime,
                           leased_activities: Collection[int] | None = None,
                           successor_run_id: str | None = None,
                           execution_timeout_ms: int | None = None,
                           child_run_ids: Mapping[int, str | None] | None = None,
                           started: Mapping[str, Any] | None = None) -> Transition:
    """Record a completed workflow task and its commands.

    ``leased_activities``: the seqs of the activities whose task a worker holds now. An
    activity the workflow cancels is canceled at once unless it is leased; a leased one is
    asked to cancel (``RequestActivityCancel``) and answers later. None (not known): every
    cancel is only requested.

    A closing ``ContinueAsNew`` needs ``successor_run_id`` (the service draws it, so this
    stays deterministic) and the chain's ``execution_timeout_ms``; it closes the run only
    if no news is waiting for the workflow, else the task's other commands are applied and
    the workflow runs again with the news.

    ``child_run_ids``: for each ``start_child_workflow`` command (by seq), the run id the
    service drew for the child, or None when its ``workflow_id`` already has an open run
    (the start fails: StartChildWorkflowExecutionFailed).

    A closing ``FailWorkflow`` of a run started with a retry policy (``started``: its
    WorkflowExecutionStarted attributes) retries the run when the policy allows: the failed
    event names ``successor_run_id`` (which the service then draws) as its
    ``new_execution_run_id`` and a ``StartSuccessor`` starts it with ``attempt`` + 1 and the
    back-off before its first workflow task (``retry_delay``).
    """
    t = _open(state, now)
    _complete_workflow_task(t, scheduled_event_id=scheduled_event_id, commands=commands,
                            worker=worker, leased_activities=leased_activities,
                            successor_run_id=successor_run_id,
                            execution_timeout_ms=execution_timeout_ms,
                            child_run_ids=child_run_ids, started=started)
    return t


def _complete_workflow_task(t: Transition, *, scheduled_event_id: int,
                            commands: Sequence[c.Command], worker: str,
                            leased_activities: Collection[int] | None,
                            successor_run_id: str | None, execution_timeout_ms: int | None,
                            child_run_ids: Mapping[int, str | None] | None,
                            started: Mapping[str, Any] | None) -> None:
    """``complete_workflow_task`` on ``t``, whose state has the task started."""
    state = t.state
    _current_task(state, scheduled_event_id, started=True)
    wt = state.workflow_task
    assert wt is not None
    check_closing(commands)
    successor = commands[-1] if commands and isinstance(commands[-1], c.ContinueAsNew) else None
    if successor is not None:
        if successor_run_id is None:
            raise Rejected("invalid_command", "continue_as_new needs the successor's run id")
        commands = commands[:-1]
    terminal = bool(commands) and isinstance(commands[-1], c.TERMINAL_COMMANDS)
    if terminal and state.workflow_task_needed:
        # News arrived while the workflow ran (a signal, say): closing now would drop it.
        # Throw this task away and run the workflow again with the news.
        t.add(E.WORKFLOW_TASK_FAILED, scheduled_event_id=scheduled_event_id,
              started_event_id=wt.started_event_id, cause="unhandled_events",
              failure=c.normalize_failure({"type": "UnhandledEvents", "message":
                  "new events arrived while the workflow task ran; it runs again"}))
        t.add(E.WORKFLOW_TASK_SCHEDULED, task_queue=state.task_queue, attempt=1)
        return
    t.add(E.WORKFLOW_TASK_COMPLETED, scheduled_event_id=scheduled_event_id,
          started_event_id=wt.started_event_id, worker=worker)
    answers = _Answers()
    for cmd in commands:
        if isinstance(cmd, c.FailWorkflow) and started is not None:
            _fail_workflow(t, cmd, started, successor_run_id, execution_timeout_ms)
            continue
        _apply_command(t, cmd, answers, child_run_ids or {})
    t.schedule_workflow_task_if_needed()
    _cancel_activities(t, leased_activities)
    continues = (successor is not None and successor_run_id is not None and t.state.is_open
                 and t.state.workflow_task is None)
    closing = continues or not t.state.is_open
    if continues and successor is not None and successor_run_id is not None:
        _continue_as_new(t, successor, successor_run_id, execution_timeout_ms)
    _answer(t, answers, closing=closing)


# The commands a workflow task run eagerly on an activity's result may carry: those whose
# outcome needs nothing but the run's own state (no child's run id, no leased activity, no
# retry policy of the run). A task with any other goes the usual way.
EAGER_COMMANDS = (c.ScheduleActivity, c.StartTimer, c.CancelTimer, c.RecordMarker,
                  c.CompleteWorkflow)


def complete_activity_and_workflow_task(state: ExecutionState, *, seq: int, attempt: int,
                                        worker: str, result: Any, now: datetime,
                                        commands: Sequence[c.Command]) -> Transition:
    """An activity's completion and the workflow task its worker ran on it at once (an eager
    workflow task): ``close_activity`` (which schedules the task), the task started on
    ``worker`` and completed with ``commands``, all stamped ``now``, the task's start. The
    history is the one the two steps would have written apart, with nothing between them.

    Rejected (``eager_refused``) unless the completion is what schedules the task (no task
    was scheduled or running) and every command is one of ``EAGER_COMMANDS``."""
    if not all(isinstance(cmd, EAGER_COMMANDS) for cmd in commands):
        raise Rejected("eager_refused", "a command the eager path does not take")
    t = close_activity(state, seq=seq, outcome=E.ACTIVITY_TASK_COMPLETED, now=now,
                       attempt=attempt, worker=worker, result=result)
    wt = t.state.workflow_task
    if (wt is None or wt.started_event_id is not None
            or wt.scheduled_event_id != t.events[-1].event_id):
        raise Rejected("eager_refused", "a workflow task was already scheduled")
    t.add(E.WORKFLOW_TASK_STARTED, scheduled_event_id=wt.scheduled_event_id,
          attempt=wt.attempt, worker=worker)
    _complete_workflow_task(t, scheduled_event_id=wt.scheduled_event_id, commands=commands,
                            worker=worker, leased_activities=None, successor_run_id=None,
                            execution_timeout_ms=None, child_run_ids=None, started=None)
    return t


def retry_delay(started: Mapping[str, Any], failure: Mapping[str, Any], *,
                now: datetime) -> int | None:
    """The back-off before a run that failed with ``failure`` is started again under its
    retry policy (``started``: its WorkflowExecutionStarted attributes), or None: no retry
    (no policy, a non-retryable failure, or its last attempt)."""
    if started.get("retry_policy") is None:
        return None
    policy = c.RetryPolicy.from_dict(started["retry_policy"])
    return retry.retry_delay_ms(policy, attempt=int(started.get("attempt") or 1),
                                failure=failure, now=now, deadline=None)


def _fail_workflow(t: Transition, cmd: c.FailWorkflow, started: Mapping[str, Any],
                   run_id: str | None, execution_timeout_ms: int | None) -> None:
    delay = retry_delay(started, cmd.failure, now=t.now)
    if delay is None or run_id is None:
        t.add(E.WORKFLOW_EXECUTION_FAILED, failure=cmd.failure)
        return
    t.add(E.WORKFLOW_EXECUTION_FAILED, failure=cmd.failure, new_execution_run_id=run_id)
    _retry_run(t, started, run_id, execution_timeout_ms, delay)


def _retry_run(t: Transition, started: Mapping[str, Any], run_id: str,
               execution_timeout_ms: int | None, delay: int) -> None:
    t.effects.append(StartSuccessor(
        run_id, t.state.workflow_type, t.state.task_queue, started.get("input"),
        execution_timeout_ms, retry_policy=started["retry_policy"],
        attempt=int(started.get("attempt") or 1) + 1, first_workflow_task_backoff_ms=delay))


def _cancel_activities(t: Transition, leased: Collection[int] | None) -> None:
    """For each activity the workflow asked to cancel in ``t``: one not running is canceled
    at once; the worker running one is told, and the activity sees it at its next
    heartbeat."""
    if not t.state.is_open:
        return  # the same task closed the run: every task of it is dropped
    for e in list(t.events):
        if e.event_type is not E.ACTIVITY_TASK_CANCEL_REQUESTED:
            continue
        seq = e.attributes["seq"]
        if leased is None or seq in leased:
            t.effects.append(RequestActivityCancel(seq, e.attributes["scheduled_event_id"]))
            continue
        _close_activity(t, seq=seq, outcome=E.ACTIVITY_TASK_CANCELED, attempt=1, worker=None,
                        details=None)


def _continue_as_new(t: Transition, cmd: c.ContinueAsNew, run_id: str,
                     execution_timeout_ms: int | None) -> None:
    workflow_type = cmd.workflow_type or t.state.workflow_type
    task_queue = cmd.task_queue or t.state.task_queue
    t.add(E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW, new_run_id=run_id,
          workflow_type=workflow_type, task_queue=task_queue, input=cmd.input)
    # Each run of the chain gets the execution timeout the first was started with.
    t.effects.append(StartSuccessor(run_id, workflow_type, task_queue, cmd.input,
                                    execution_timeout_ms))


# ---- child workflows -----------------------------------------------------------------------


def _parent_close_policy(state: ExecutionState) -> list[Effect]:
    """What closing the run does to its children still running, by their policy. Applied on
    every close, continue-as-new included (as Temporal does: the new run does not hold the
    old run's children; a child meant to outlive its parent says ``abandon``)."""
    return [ActOnChild(TimerKind.PARENT_CLOSE_POLICY, child.workflow_id, child.run_id,
                       {"policy": child.parent_close_policy})
            for child in state.children.values()
            if child.run_id is not None and child.parent_close_policy != "abandon"]


@dataclass
class _Answers:
    """Input events that answer a task's own commands (a child started, a signal that found
    no child), appended after all the task's command events, as replay expects."""

    events: list[tuple[EventType, dict[str, Any]]] = field(default_factory=list)
    children: list[tuple[c.StartChildWorkflow, str]] = field(default_factory=list)


def _start_child(t: Transition, cmd: c.StartChildWorkflow, answers: _Answers,
                 child_run_ids: Mapping[int, str | None]) -> None:
    _new_seq(t, cmd.seq)
    if cmd.seq not in child_run_ids:
        raise Rejected("invalid_command", "start_child_workflow needs the child's run id")
    initiated = t.add(E.START_CHILD_WORKFLOW_EXECUTION_INITIATED, seq=cmd.seq,
                      workflow_type=cmd.workflow_type, workflow_id=cmd.workflow_id,
                      task_queue=cmd.task_queue or t.state.task_queue, input=cmd.input,
                      execution_timeout_ms=cmd.execution_timeout_ms,
                      parent_close_policy=cmd.parent_close_policy,
                      **({} if cmd.retry_policy is None
                         else {"retry_policy": cmd.retry_policy.to_dict()}))
    run_id = child_run_ids[cmd.seq]
    ref = {"seq": cmd.seq, "initiated_event_id": initiated.event_id,
           "workflow_id": cmd.workflow_id}
    taken = run_id is None or any(started.workflow_id == cmd.workflow_id
                                  for started, _ in answers.children)
    if taken:
        answers.events.append((E.START_CHILD_WORKFLOW_EXECUTION_FAILED,
                               {**ref, "cause": "workflow_already_started"}))
        return
    assert run_id is not None
    answers.children.append((cmd, run_id))
    answers.events.append((E.CHILD_WORKFLOW_EXECUTION_STARTED, {**ref, "run_id": run_id}))


def _signal_child(t: Transition, cmd: c.SignalExternalWorkflow, answers: _Answers) -> None:
    _new_seq(t, cmd.seq)
    initiated = t.add(E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED, seq=cmd.seq,
                      workflow_id=cmd.workflow_id, run_id=cmd.run_id,
                      signal_name=cmd.signal_name, input=cmd.input)
    child = t.state.child(cmd.workflow_id)
    if child is None or (cmd.run_id is not None and cmd.run_id != child.run_id):
        answers.events.append((E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED, {
            "seq": cmd.seq, "initiated_event_id": initiated.event_id,
            "workflow_id": cmd.workflow_id, "cause": "workflow_not_found"}))
        return
    t.effects.append(ActOnChild(TimerKind.CHILD_SIGNAL, cmd.workflow_id, child.run_id, {
        "seq": cmd.seq, "initiated_event_id": initiated.event_id,
        "signal_name": cmd.signal_name, "input": cmd.input}))


def _cancel_child(t: Transition, cmd: c.RequestCancelExternalWorkflow) -> None:
    _new_seq(t, cmd.seq)
    t.add(E.REQUEST_CANCEL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED, seq=cmd.seq,
          workflow_id=cmd.workflow_id, run_id=cmd.run_id)
    child = t.state.child(cmd.workflow_id)
    if child is not None:  # else it ended meanwhile: the workflow hears of it next
        t.effects.append(ActOnChild(TimerKind.CHILD_CANCEL, cmd.workflow_id, child.run_id))


def _answer(t: Transition, answers: _Answers, *, closing: bool) -> None:
    """Start the task's children; record the answers to its commands unless the same task
    closed the run (a closed run takes no event: its children start all the same, and its
    close policy applies to them at once)."""
    if not closing:
        for event_type, attributes in answers.events:
            t.add(event_type, **attributes)
        if answers.events:
            _needs_task(t)
    for cmd, run_id in answers.children:
        t.effects.append(StartChild(
            run_id, cmd.workflow_id, cmd.workflow_type, cmd.task_queue or t.state.task_queue,
            cmd.input, cmd.execution_timeout_ms, cmd.parent_close_policy,
            parent_closed=closing,
            retry_policy=None if cmd.retry_policy is None else cmd.retry_policy.to_dict()))


_CHILD_OUTCOMES = {
    E.CHILD_WORKFLOW_EXECUTION_COMPLETED: ("result",),
    E.CHILD_WORKFLOW_EXECUTION_FAILED: ("failure",),
    E.CHILD_WORKFLOW_EXECUTION_CANCELED: ("details",),
    E.CHILD_WORKFLOW_EXECUTION_TERMINATED: ("reason",),
    E.CHILD_WORKFLOW_EXECUTION_TIMED_OUT: (),
}


def child_closed(state: ExecutionState, *, workflow_id: str, run_id: str, outcome: EventType,
                 now: datetime, **attributes: Any) -> Transition:
    """The parent hears that its child ``workflow_id`` ended (its run ``run_id``, the last of
    its chain) with ``outcome``; signals to it still unanswered fail. Nothing happens if the
    parent closed or no longer waits for that child."""
    t = Transition(state, now)
    child = state.child(workflow_id) if state.is_open else None
    if child is None:
        return t
    for pending in list(state.external.values()):
        if pending.workflow_id == workflow_id:
            t.add(E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED, seq=pending.seq,
                  initiated_event_id=pending.initiated_event_id, workflow_id=workflow_id,
                  cause="workflow_closed")
    t.add(outcome, seq=child.seq, initiated_event_id=child.initiated_event_id,
          workflow_id=workflow_id, run_id=run_id,
          **{key: attributes.get(key) for key in _CHILD_OUTCOMES[outcome]})
    _needs_task(t)
    return t


def child_signaled(state: ExecutionState, *, seq: int, run_id: str | None,
                   now: datetime) -> Transition:
    """The parent's signal ``seq`` reached its child's run ``run_id`` (None: it found the
    child closed). Nothing happens if the parent closed or the signal was answered."""
    t = Transition(state, now)
    pending = state.external.get(seq) if state.is_open else None
    if pending is None:
        return t
    ref = {"seq": seq, "initiated_event_id": pending.initiated_event_id,
           "workflow_id": pending.workflow_id}
    if run_id is None:
        t.add(E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED, **ref, cause="workflow_closed")
    else:
        t.add(E.EXTERNAL_WORKFLOW_EXECUTION_SIGNALED, **ref, run_id=run_id)
    _needs_task(t)
    return t


def _new_seq(t: Transition, seq: int) -> None:
    if seq <= t.state.max_seq:
        raise Rejected("invalid_command", f"seq {seq} is not above the last one, {t.state.max_seq}")


def _apply_command(t: Transition, cmd: c.Command, answers: _Answers,
                   child_run_ids: Mapping[int, str | None]) -> None:
    if isinstance(cmd, c.StartChildWorkflow):
        _start_child(t, cmd, answers, child_run_ids)
    elif isinstance(cmd, c.SignalExternalWorkflow):
        _signal_child(t, cmd, answers)
    elif isinstance(cmd, c.RequestCancelExternalWorkflow):
        _cancel_child(t, cmd)
    elif isinstance(cmd, c.ScheduleActivity):
        _new_seq(t, cmd.seq)
        t.add(E.ACTIVITY_TASK_SCHEDULED, seq=cmd.seq, activity_type=cmd.activity_type,
              task_queue=cmd.task_queue or t.state.task_queue, input=cmd.input,
              retry_policy=cmd.retry_policy.to_dict(),
              schedule_to_close_ms=cmd.schedule_to_close_ms,
              schedule_to_start_ms=cmd.schedule_to_start_ms,
              start_to_close_ms=cmd.start_to_close_ms, heartbeat_ms=cmd.heartbeat_ms)
    elif isinstance(cmd, c.StartTimer):
        _new_seq(t, cmd.seq)
        fire_at = t.now + timedelta(milliseconds=cmd.duration_ms)
        t.add(E.TIMER_STARTED, seq=cmd.seq, duration_ms=cmd.duration_ms,
              fire_at=fire_at.isoformat())
    elif isinstance(cmd, c.RecordMarker):
        _new_seq(t, cmd.seq)
        t.add(E.MARKER_RECORDED, seq=cmd.seq, marker_name=cmd.marker_name, data=cmd.data)
    elif isinstance(cmd, c.CancelTimer):
        timer = t.state.timers.get(cmd.seq)
        if timer is not None:  # gone means it fired meanwhile: the workflow hears of it next
            t.add(E.TIMER_CANCELED, started_event_id=timer.started_event_id, seq=cmd.seq)
    elif isinstance(cmd, c.RequestCancelActivity):
        activity = t.state.activities.get(cmd.seq)
        if activity is not None and not activity.cancel_requested:
            t.add(E.ACTIVITY_TASK_CANCEL_REQUESTED,
                  scheduled_event_id=activity.scheduled_event_id, seq=cmd.seq)
    elif isinstance(cmd, c.CompleteUpdate):
        accepted = t.state.updates.get(cmd.update_id)
        if accepted is None:
            raise Rejected("invalid_command",
                           f"complete_update for update {cmd.update_id!r} that is not pending")
        t.add(E.WORKFLOW_EXECUTION_UPDATE_COMPLETED, update_id=cmd.update_id,
              accepted_event_id=accepted, result=cmd.result, failure=cmd.failure)
    elif isinstance(cmd, c.CompleteWorkflow):
        t.add(E.WORKFLOW_EXECUTION_COMPLETED, result=cmd.result)
    elif isinstance(cmd, c.FailWorkflow):
        t.add(E.WORKFLOW_EXECUTION_FAILED, failure=cmd.failure)
    elif isinstance(cmd, c.CancelWorkflow):
        t.add(E.WORKFLOW_EXECUTION_CANCELED, details=cmd.details)
    elif isinstance(cmd, c.ContinueAsNew):  # check_closing keeps it last; taken off above
        raise Rejected("invalid_command", "a closing command must be the last and only one")


def _activity(state: ExecutionState, seq: int) -> int:
    activity = state.activities.get(seq)
    if activity is None:
        raise Rejected("stale_task", f"activity {seq} is not pending")
    return activity.scheduled_event_id


def close_activity(state: ExecutionState, *, seq: int, outcome: EventType, now: datetime,
                   attempt: int, worker: str | None, **attributes: Any) -> Transition:
    """Record an activity's final outcome (completed, failed, timed out, canceled).

    ``worker`` is the worker that ran the last attempt, or None if it never started; an
    ``ActivityTaskStarted`` for that attempt is written just before the outcome, so retries
    do not grow the history.
    """
    t = _open(state, now)
    _close_activity(t, seq=seq, outcome=outcome, attempt=attempt, worker=worker, **attributes)
    return t


def _close_activity(t: Transition, *, seq: int, outcome: EventType, attempt: int,
                    worker: str | None, **attributes: Any) -> None:
    scheduled = _activity(t.state, seq)
    if worker is not None:
        t.add(E.ACTIVITY_TASK_STARTED, scheduled_event_id=scheduled, seq=seq,
              attempt=attempt, worker=worker)
    if outcome is E.ACTIVITY_TASK_FAILED or outcome is E.ACTIVITY_TASK_TIMED_OUT:
        attributes["attempt"] = attempt
    t.add(outcome, scheduled_event_id=scheduled, seq=seq, **attributes)
    _needs_task(t)


def fire_timer(state: ExecutionState, *, seq: int, now: datetime) -> Transition:
    t = _open(state, now)
    timer = state.timers.get(seq)
    if timer is None:
        raise Rejected("stale_timer", f"timer {seq} is not pending")
    t.add(E.TIMER_FIRED, started_event_id=timer.started_event_id, seq=seq)
    _needs_task(t)
    return t


# ---- activity attempts: retries and timeouts -----------------------------------------------


def fail_activity_attempt(state: ExecutionState, *, seq: int, attempt: int,
                          options: Mapping[str, Any], failure: Mapping[str, Any],
                          worker: str | None, now: datetime,
                          timeout_type: str | None = None) -> Transition:
    """Attempt ``attempt`` of activity ``seq`` failed (or timed out, ``timeout_type``): retry
    it after its policy's back-off (``RetryActivity``, no event), or, when the policy, the
    failure or the schedule-to-close deadline says it is over, record the activity's
    ActivityTaskFailed / ActivityTaskTimedOut. ``options`` are the activity's as scheduled."""
    policy = c.RetryPolicy.from_dict(options.get("retry_policy"))
    delay = retry.retry_delay_ms(policy, attempt=attempt, failure=failure, now=now,
                                 deadline=retry.schedule_to_close_deadline(options))
    if delay is None:
        if timeout_type is not None:
            return close_activity(state, seq=seq, outcome=E.ACTIVITY_TASK_TIMED_OUT, now=now,
                                  attempt=attempt, worker=worker, timeout_type=timeout_type,
                                  failure=failure)
        return close_activity(state, seq=seq, outcome=E.ACTIVITY_TASK_FAILED, now=now,
                              attempt=attempt, worker=worker, failure=failure)
    t = _open(state, now)
    _activity(state, seq)
    t.effects.append(RetryActivity(seq, attempt + 1, {**failure, "attempt": attempt},
                                   now + timedelta(milliseconds=delay)))
    return t


def time_out_activity_attempt(state: ExecutionState, *, seq: int, attempt: int,
                              options: Mapping[str, Any], leased_at: datetime | None,
                              worker: str | None, now: datetime) -> Transition:
    """The running attempt passed its start-to-close or heartbeat deadline."""
    timeout_type = retry.attempt_timeout_type(options, leased_at=leased_at, now=now)
    return fail_activity_attempt(state, seq=seq, attempt=attempt, options=options,
                                 failure=retry.timeout_failure(timeout_type), worker=worker,
                                 now=now, timeout_type=timeout_type)


def time_out_activity_schedule_to_start(state: ExecutionState, *, seq: int,
                                        task_state: TaskState, attempt: int,
                                        now: datetime) -> Transition:
    """No worker took the first attempt in time: the activity times out, for good. Nothing
    happens if an attempt started meanwhile."""
    if task_state == TaskState.LEASED or attempt > 1:
        return Transition(state, now)
    return close_activity(state, seq=seq, outcome=E.ACTIVITY_TASK_TIMED_OUT, now=now,
                          attempt=attempt, worker=None, timeout_type="schedule_to_start",
                          failure=retry.timeout_failure("schedule_to_start"))


def time_out_activity_schedule_to_close(state: ExecutionState, *, seq: int, attempt: int,
                                        worker: str | None, now: datetime) -> Transition:
    """The activity ran out of its whole time, attempts and back-offs included. ``worker``:
    the worker running an attempt now, if one is."""
    return close_activity(state, seq=seq, outcome=E.ACTIVITY_TASK_TIMED_OUT, now=now,
                          attempt=attempt, worker=worker, timeout_type="schedule_to_close",
                          failure=retry.timeout_failure("schedule_to_close"))


def end_activity_backoff(state: ExecutionState, *, seq: int, task_state: TaskState | None,
                         now: datetime) -> Transition:
    """An activity's retry back-off is over: its task is ready for the next attempt (if it
    is still waiting in backoff)."""
    t = _open(state, now)
    if task_state == TaskState.BACKOFF:
        _activity(state, seq)
        t.effects.append(ReadyActivity(seq))
    return t
