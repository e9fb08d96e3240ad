"""Updates in the pure core: the complete_update command's wire form, the state of pending
updates, and what accepting and completing an update write."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings

from workflows.core import commands as c
from workflows.core import decide
from workflows.core.events import Event, EventType
from workflows.core.state import ExecutionState, FoldError, fold

from .strategies import Driver, runs
from .test_children import complete, running, types

E = EventType


def test_complete_update_round_trips_and_is_validated() -> None:
    ok = c.parse_command({"kind": "complete_update", "update_id": "u1", "result": [1, 2]})
    assert ok == c.CompleteUpdate(update_id="u1", result=[1, 2])
    failed = c.parse_command({"kind": "complete_update", "update_id": "u1", "result": 3,
                              "failure": {"type": "Nope", "message": "no"}})
    assert isinstance(failed, c.CompleteUpdate) and failed.result is None
    assert failed.failure is not None and failed.failure["type"] == "Nope"
    for bad in ({"update_id": ""}, {"update_id": 7}, {"update_id": "x" * 256}):
        with pytest.raises(c.InvalidCommand, match="update_id"):
            c.parse_command({"kind": "complete_update", **bad})


def test_an_accepted_update_is_input_that_schedules_a_workflow_task() -> None:
    t = running()
    complete(t, [])
    step = decide.accept_update(t.state, update_id="u1", name="add", args=[2], now=t.now)
    assert types(step) == [E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED, E.WORKFLOW_TASK_SCHEDULED]
    assert step.events[0].attributes == {"update_id": "u1", "update_name": "add", "args": [2]}
    assert step.state.updates == {"u1": step.events[0].event_id}


def test_an_update_arriving_while_a_task_runs_waits_for_the_next_task() -> None:
    t = running()  # a task in flight
    step = decide.accept_update(t.state, update_id="u1", name="add", args=[], now=t.now)
    assert types(step) == [E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED]
    assert step.state.workflow_task_needed
    # The task in flight closing the run would drop the update: it runs again instead.
    closing = complete(step, [c.CompleteWorkflow(result=None)])
    assert types(closing) == [E.WORKFLOW_TASK_FAILED, E.WORKFLOW_TASK_SCHEDULED]


def test_the_same_update_id_pending_is_not_accepted_twice() -> None:
    t = running()
    t.extend(decide.accept_update(t.state, update_id="u1", name="add", args=[], now=t.now))
    again = decide.accept_update(t.state, update_id="u1", name="add", args=[], now=t.now)
    assert again.events == []


def test_complete_update_records_the_result_or_the_failure_and_the_run_goes_on() -> None:
    t = running()
    t.extend(decide.accept_update(t.state, update_id="u1", name="add", args=[], now=t.now))
    t.extend(decide.accept_update(t.state, update_id="u2", name="add", args=[], now=t.now))
    accepted = {e.attributes["update_id"]: e.event_id for e in t.events
                if e.event_type is E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED}
    failure = c.normalize_failure({"type": "Full", "message": "the cart is full"})
    step = complete(t, [c.CompleteUpdate(update_id="u1", result=3)])
    step = complete(t, [c.CompleteUpdate(update_id="u2", failure=failure)])
    done = [e for e in t.events if e.event_type is E.WORKFLOW_EXECUTION_UPDATE_COMPLETED]
    assert [e.attributes for e in done] == [
        {"update_id": "u1", "accepted_event_id": accepted["u1"], "result": 3, "failure": None},
        {"update_id": "u2", "accepted_event_id": accepted["u2"], "result": None,
         "failure": failure}]
    assert step.state.is_open and step.state.updates == {}
    assert fold(t.events) == t.state


def test_completing_an_update_that_is_not_pending_is_refused() -> None:
    t = running()
    with pytest.raises(decide.Rejected) as err:
        complete(t, [c.CompleteUpdate(update_id="nope", result=1)])
    assert err.value.code == "invalid_command"


def test_a_closed_run_accepts_no_update_and_drops_its_pending_ones() -> None:
    t = running()
    t.extend(decide.accept_update(t.state, update_id="u1", name="add", args=[], now=t.now))
    t.extend(decide.terminate(t.state, reason=None, now=t.now))
    assert t.state.updates == {}
    with pytest.raises(decide.Rejected) as err:
        decide.accept_update(t.state, update_id="u2", name="add", args=[], now=t.now)
    assert err.value.code == "run_closed"


def test_the_fold_refuses_an_update_completed_that_was_not_pending() -> None:
    t = running()
    t.extend(decide.accept_update(t.state, update_id="u1", name="add", args=[], now=t.now))
    events = list(t.events)
    forged = Event(len(events) + 1, E.WORKFLOW_EXECUTION_UPDATE_COMPLETED, t.now,
                          {"update_id": "u9", "accepted_event_id": 1, "result": None,
                           "failure": None})
    with pytest.raises(FoldError, match="not pending"):
        fold([*events, forged])


def test_pending_updates_survive_the_snapshot_and_old_snapshots_have_none() -> None:
    t = running()
    t.extend(decide.accept_update(t.state, update_id="u1", name="add", args=[], now=t.now))
    assert ExecutionState.from_dict(t.state.to_dict()) == t.state
    old: dict[str, Any] = t.state.to_dict()
    del old["updates"]
    assert ExecutionState.from_dict(old).updates == {}


@settings(max_examples=150, deadline=None)
@given(runs())
def test_random_runs_with_updates_fold_to_their_state(driver: Driver) -> None:
    assert fold(driver.events) == driver.state
    pending: dict[str, int] = {}
    for e in driver.events:  # each completion answers an update accepted and pending
        if e.event_type is E.WORKFLOW_EXECUTION_UPDATE_ACCEPTED:
            assert e.attributes["update_id"] not in pending
            pending[e.attributes["update_id"]] = e.event_id
        elif e.event_type is E.WORKFLOW_EXECUTION_UPDATE_COMPLETED:
            assert pending.pop(e.attributes["update_id"]) == e.attributes["accepted_event_id"]
    assert driver.state.updates == (pending if driver.state.is_open else {})
