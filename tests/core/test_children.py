"""Child workflows in the pure core: the commands' wire form, the parent's state, and what
``decide`` writes and implies for a parent and its children."""

from __future__ import annotations

from typing import Any

import pytest

from workflows.core import commands as c
from workflows.core import decide
from workflows.core import effects as fx
from workflows.core.events import EventType
from workflows.core.state import ExecutionState, fold

from .strategies import T0

E = EventType


def running() -> decide.Transition:
    t = decide.start(workflow_type="Parent", task_queue="q", input=None, now=T0)
    t.extend(decide.start_workflow_task(t.state, scheduled_event_id=2, worker="w", now=T0))
    return t


def complete(t: decide.Transition, commands: list[c.Command],
             **kwargs: Any) -> decide.Transition:
    wt = t.state.workflow_task
    assert wt is not None
    if wt.started_event_id is None:
        t.extend(decide.start_workflow_task(t.state, scheduled_event_id=wt.scheduled_event_id,
                                            worker="w", now=T0))
    step = decide.complete_workflow_task(t.state, scheduled_event_id=wt.scheduled_event_id,
                                         commands=commands, worker="w", now=T0, **kwargs)
    t.events.extend(step.events)
    t.state = step.state
    return step


def kid(seq: int, workflow_id: str = "kid", policy: str = "terminate") -> c.StartChildWorkflow:
    return c.StartChildWorkflow(seq=seq, workflow_type="Kid", workflow_id=workflow_id,
                                parent_close_policy=policy)


def types(t: decide.Transition) -> list[EventType]:
    return [e.event_type for e in t.events]


@pytest.mark.parametrize(("raw", "problem"), [
    ({"workflow_id": ""}, "workflow_id must not be empty"),
    ({"workflow_id": "a\nb"}, "control characters"),
    ({"workflow_id": 7}, "workflow_id must be a string"),
    ({"parent_close_policy": "explode"}, "parent_close_policy must be one of"),
    ({"workflow_type": " x"}, "must not begin with whitespace"),
])
def test_start_child_workflow_is_validated_with_the_name_rule(raw: dict[str, Any],
                                                              problem: str) -> None:
    command = {"kind": "start_child_workflow", "seq": 1, "workflow_type": "Kid",
               "workflow_id": "kid", **raw}
    with pytest.raises(c.InvalidCommand, match=problem):
        c.parse_command(command)


def test_signal_external_workflow_takes_a_run_id_only_as_a_uuid() -> None:
    with pytest.raises(c.InvalidCommand, match="run_id"):
        c.parse_command({"kind": "signal_external_workflow", "seq": 1, "workflow_id": "k",
                         "signal_name": "s", "run_id": "nope"})


def test_a_started_child_is_pending_and_survives_the_snapshot() -> None:
    t = running()
    step = complete(t, [kid(1)], child_run_ids={1: "r1"})
    assert types(step) == [E.WORKFLOW_TASK_COMPLETED, E.START_CHILD_WORKFLOW_EXECUTION_INITIATED,
                           E.CHILD_WORKFLOW_EXECUTION_STARTED, E.WORKFLOW_TASK_SCHEDULED]
    assert [e for e in step.effects if isinstance(e, fx.StartChild)] == [fx.StartChild(
        "r1", "kid", "Kid", "q", None, None, "terminate", parent_closed=False)]
    state = t.state
    assert state.children[1].run_id == "r1" and state.child("kid") == state.children[1]
    assert ExecutionState.from_dict(state.to_dict()) == state == fold(t.events)
    old = {k: v for k, v in state.to_dict().items() if k not in ("children", "external")}
    assert ExecutionState.from_dict(old).children == {}  # a snapshot from before children


def test_the_childs_end_reaches_the_waiting_parent_once() -> None:
    t = running()
    complete(t, [kid(1)], child_run_ids={1: "r1"})
    complete(t, [])
    step = decide.child_closed(t.state, workflow_id="kid", run_id="r2",
                               outcome=E.CHILD_WORKFLOW_EXECUTION_FAILED, now=T0,
                               failure={"type": "Boom"}, result="ignored")
    assert types(step) == [E.CHILD_WORKFLOW_EXECUTION_FAILED, E.WORKFLOW_TASK_SCHEDULED]
    assert step.events[0].attributes == {"seq": 1, "initiated_event_id": 5,
                                         "workflow_id": "kid", "run_id": "r2",
                                         "failure": {"type": "Boom"}}
    assert step.state.children == {}
    again = decide.child_closed(step.state, workflow_id="kid", run_id="r2",
                                outcome=E.CHILD_WORKFLOW_EXECUTION_COMPLETED, now=T0)
    assert again.events == [] and again.effects == []


def test_a_closed_parent_hears_nothing() -> None:
    t = running()
    complete(t, [kid(1)], child_run_ids={1: "r1"})
    closed = decide.terminate(t.state, reason=None, now=T0)
    step = decide.child_closed(closed.state, workflow_id="kid", run_id="r1",
                               outcome=E.CHILD_WORKFLOW_EXECUTION_COMPLETED, now=T0, result=1)
    assert step.events == []
    assert decide.child_signaled(closed.state, seq=2, run_id="r1", now=T0).events == []


@pytest.mark.parametrize("close", [
    lambda s: decide.terminate(s, reason=None, now=T0),
    lambda s: decide.time_out_workflow(s, now=T0),
])
def test_every_close_applies_the_policy_of_each_child(close: Any) -> None:
    t = running()
    complete(t, [kid(1, "a"), kid(2, "b", "abandon"), kid(3, "c", "request_cancel")],
             child_run_ids={1: "ra", 2: "rb", 3: "rc"})
    step = close(t.state)
    acts = [e for e in step.effects if isinstance(e, fx.ActOnChild)]
    assert acts == [
        fx.ActOnChild(fx.TimerKind.PARENT_CLOSE_POLICY, "a", "ra", {"policy": "terminate"}),
        fx.ActOnChild(fx.TimerKind.PARENT_CLOSE_POLICY, "c", "rc",
                      {"policy": "request_cancel"})]


def test_continue_as_new_is_a_close_for_the_policy_and_starts_children_as_closed() -> None:
    t = running()
    complete(t, [kid(1, "a")], child_run_ids={1: "ra"})
    step = complete(t, [kid(2, "b"), c.ContinueAsNew(input=1)], child_run_ids={2: "rb"},
                    successor_run_id="next")
    assert types(step)[-2:] == [E.START_CHILD_WORKFLOW_EXECUTION_INITIATED,
                                E.WORKFLOW_EXECUTION_CONTINUED_AS_NEW]
    assert [type(e) for e in step.effects] == [fx.CloseRun, fx.ActOnChild, fx.StartSuccessor,
                                               fx.StartChild]
    started = next(e for e in step.effects if isinstance(e, fx.StartChild))
    assert started.parent_closed and started.workflow_id == "b"


def test_a_signal_goes_to_a_started_child_and_fails_at_once_for_anything_else() -> None:
    t = running()
    complete(t, [kid(1)], child_run_ids={1: "r1"})
    step = complete(t, [c.SignalExternalWorkflow(seq=2, workflow_id="kid", signal_name="go"),
                        c.SignalExternalWorkflow(seq=3, workflow_id="other", signal_name="go")])
    assert types(step) == [E.WORKFLOW_TASK_COMPLETED,
                           E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
                           E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED,
                           E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED,
                           E.WORKFLOW_TASK_SCHEDULED]
    assert step.events[3].attributes["seq"] == 3
    acts = [e for e in step.effects if isinstance(e, fx.ActOnChild)]
    assert [(a.kind, a.workflow_id, a.payload["seq"]) for a in acts] == [
        (fx.TimerKind.CHILD_SIGNAL, "kid", 2)]
    assert set(t.state.external) == {2}
    answered = decide.child_signaled(t.state, seq=2, run_id="r1", now=T0)
    assert types(answered)[0] is E.EXTERNAL_WORKFLOW_EXECUTION_SIGNALED
    assert answered.state.external == {}


def test_the_childs_end_fails_the_signals_still_on_their_way() -> None:
    t = running()
    complete(t, [kid(1)], child_run_ids={1: "r1"})
    complete(t, [c.SignalExternalWorkflow(seq=2, workflow_id="kid", signal_name="go")])
    step = decide.child_closed(t.state, workflow_id="kid", run_id="r1",
                               outcome=E.CHILD_WORKFLOW_EXECUTION_TERMINATED, now=T0,
                               reason="why")
    assert types(step)[:2] == [E.SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_FAILED,
                               E.CHILD_WORKFLOW_EXECUTION_TERMINATED]
    assert step.events[1].attributes["reason"] == "why"


def test_a_start_child_needs_its_run_id_from_the_service() -> None:
    t = running()
    with pytest.raises(decide.Rejected):
        complete(t, [kid(1)])
