"""Child workflows: starting a parent's children, and carrying its acts to them.

A parent's workflow task that starts children records them in the parent's history and
creates their runs in the same transaction (``start_children``, after the parent is
saved). What a parent later owes a child (its close policy, a signal, a cancel request)
reaches the child in the child's own transaction, through a timer row due at once on the
child's row (``workflows.core.effects.ActOnChild`` says why: a parent's transaction never
locks a child's row); ``act_on_child`` is what firing one does. A child's close writes to
its parent in the child's transaction when the parent's row is free, else through a timer
row on the parent (``workflows.services._write.tell_parent``): no transaction holding one
run's row waits for another's, so no two transitions deadlock.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from timers import store as timers
from workflows import store as executions
from workflows.core import commands as c
from workflows.core import decide
from workflows.core import effects as fx
from workflows.core.state import Status
from workflows.models import Execution

from ._write import Outcome, tell_parent, write_transition
from .executions import _create_run

__all__ = ["CHILD_TIMER_KINDS", "act_on_child", "child_run_ids", "start_children"]

CHILD_TIMER_KINDS = frozenset({fx.TimerKind.PARENT_CLOSE_POLICY, fx.TimerKind.CHILD_SIGNAL,
                               fx.TimerKind.CHILD_CANCEL})


def child_run_ids(commands: Sequence[c.Command]) -> dict[int, str | None]:
    """For each ``start_child_workflow`` command, a new run id, or None if its workflow id
    has an open run (read without a lock: an open run found here stays open or closes, and
    a start that races ours fails on the one-open-run index, which rolls the task back)."""
    return {cmd.seq: None if executions.open_run(cmd.workflow_id) else str(uuid.uuid4())
            for cmd in commands if isinstance(cmd, c.StartChildWorkflow)}


def start_children(parent: Execution, children: Sequence[fx.StartChild]) -> None:
    """Create the child runs a transition of ``parent`` decided, in its transaction."""
    now = timezone.now()
    for child in children:
        run = _create_run(workflow_id=child.workflow_id, workflow_type=child.workflow_type,
                          input=child.input, task_queue=child.task_queue,
                          execution_timeout_ms=child.execution_timeout_ms, parent=parent,
                          run_id=uuid.UUID(child.run_id),
                          retry_policy=(None if child.retry_policy is None
                                        else c.RetryPolicy.from_dict(child.retry_policy))
                          ).execution
        if child.parent_closed and child.parent_close_policy != "abandon":
            timers.insert([timers.build(run.pk, fx.StartTimer(
                fx.TimerKind.PARENT_CLOSE_POLICY, now, payload={
                    "policy": child.parent_close_policy, "parent_id": parent.pk,
                    "workflow_id": child.workflow_id}), now)])


def _target(home: Execution, payload: Mapping[str, Any]) -> Execution | None:
    """The open run of the child the timer is for (its home, or the run it continued as),
    locked; None if the child has no open run left."""
    workflow_id = payload.get("workflow_id")
    if home.workflow_id == workflow_id and home.status == Status.RUNNING.value:
        run: Execution | None = home
    else:
        found = executions.open_run(str(workflow_id))
        run = None if found is None else executions.lock(found.pk)
    if run is None or run.status != Status.RUNNING.value or run.parent_id != payload.get(
            "parent_id"):
        return None
    return run


def act_on_child(home: Execution, kind: fx.TimerKind, payload: Mapping[str, Any],
                 now: datetime) -> Outcome | None:
    """Fire a child timer of ``kind`` whose row is on ``home`` (locked by the caller)."""
    child = _target(home, payload)
    outcome = None
    if child is not None and kind is not fx.TimerKind.CHILD_SIGNAL:
        terminate = kind is fx.TimerKind.PARENT_CLOSE_POLICY and payload.get(
            "policy") == "terminate"
        state = child.core_state()
        t = (decide.terminate(state, reason="the parent closed (parent_close_policy="
                                            "terminate)", now=now) if terminate
             else decide.request_cancel(state, reason="the parent asked" if kind is
                                        fx.TimerKind.CHILD_CANCEL else "the parent closed "
                                        "(parent_close_policy=request_cancel)", now=now))
        return write_transition(child, t)
    if kind is not fx.TimerKind.CHILD_SIGNAL:
        return None
    if child is not None:
        outcome = write_transition(child, decide.signal(
            child.core_state(), name=str(payload.get("signal_name")),
            input=payload.get("input"), now=now))
    parent_id = payload.get("parent_id")
    if isinstance(parent_id, int) and executions.is_open(parent_id):
        tell_parent(parent_id, fx.TimerKind.CHILD_SIGNALED, {
            "seq": payload["seq"], "run_id": None if child is None else str(child.run_id)},
            now)
    return outcome
