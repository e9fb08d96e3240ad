"""Golden histories: frozen runs of ``fixtures/golden_workflows.py`` must still replay.

Each ``fixtures/histories/*.json`` holds a whole history (as the engine stores it) and the
command that closed the run. Replaying it from scratch must reproduce every recorded command
and that closing command; a change to the runtime or to those workflows that would break
workflows already running fails here. ``SCHED_REGEN_GOLDEN=1`` re-records the histories with
the engine simulator (then review the diff like any other change of behaviour).
"""

from __future__ import annotations

import importlib
import json
import os
from pathlib import Path
from typing import Any

import pytest

from sdk._runtime import LocalActivityOutcome, WorkflowInstance, replay_history
from sdk._workflow import workflow_definition
from sdk.protocol import LOCAL_ACTIVITY_MARKER
from tests.sdk.test_runtime import EngineSim

HISTORIES = Path(__file__).resolve().parents[2] / "fixtures" / "histories"


def _order() -> EngineSim:
    from fixtures import golden_workflows as g

    sim = EngineSim(g.golden_order, {"id": 17, "amount": 25}, workflow_id="order-17",
                    run_id="0b6f3d4e-golden-order")
    sim.drive({
        "reserve": lambda order: f"res-{order['id']}",
        "charge": lambda order: _raise("CardDeclined", "card declined"),
        "release": lambda reservation: f"released {reservation}",
    })
    return sim


def _approval() -> EngineSim:
    from fixtures import golden_workflows as g

    sim = EngineSim(g.golden_approval, ["ann", "bob", "cy"], workflow_id="approval-1",
                    run_id="7c1e-golden-approval")
    sim.signal("comment", "looks fine")  # before the first task
    sim.run_task()
    sim.advance(60)
    sim.signal("comment", "one nit")
    sim.run_task()
    sim.advance(60)
    sim.signal("approve", "dana")
    sim.drive({"notify": lambda who: f"told {who}"})
    return sim


def _cancel() -> EngineSim:
    sim = EngineSim(importlib.import_module("fixtures.golden_workflows").golden_cancel,
                    workflow_id="cancel-1", run_id="a9d2-golden-cancel")
    sim.run_task()
    sim.advance(30)
    sim.cancel()
    sim.run_task()
    sim.advance(5)
    sim.complete(3, None)  # cleanup
    sim.drive()
    return sim


def _checkout() -> EngineSim:
    from fixtures import golden_workflows as g

    cart = {"id": 9, "coupon": "SPRING", "email": "ann@example.com",
            "items": [{"sku": "tea", "price": 4, "qty": 2}, {"sku": "cup", "price": 7, "qty": 1}]}
    sim = EngineSim(g.golden_checkout, cart, workflow_id="checkout-9",
                    run_id="5e0c-golden-checkout")
    sim.local = {
        "validate": lambda c: sum(i["price"] * i["qty"] for i in c["items"]),
        "coupon": lambda code: _raise("CouponExpired", f"coupon {code} expired"),
        "price_line": lambda item: f"{item['sku']} x{item['qty']}",
        "notify": lambda who: f"told {who}",
    }
    sim.drive({"reserve": lambda order: f"res-{order['id']}"})
    return sim


def _reminder() -> EngineSim:
    from fixtures import golden_workflows as g

    sim = EngineSim(g.golden_reminder, "ann", workflow_id="reminder-1",
                    run_id="3f7a-golden-reminder")
    sim.run_task()  # asyncio.sleep(30)
    sim.fire()
    sim.run_task()  # wait_for(..., timeout=60)
    sim.advance(10)
    sim.signal("ack", "seen")
    sim.drive({"notify": lambda who: f"told {who}"})  # the asyncio.timeout(120) fires
    return sim


def _family() -> EngineSim:
    from fixtures import golden_workflows as g

    sim = EngineSim(g.golden_family, 4, workflow_id="family-1", run_id="51ab-golden-family")
    sim.drive()  # starts kid-1 and waits for it
    sim.child_closed("kid-1", "Completed", result=40)
    sim.drive()
    sim.child_closed("kid-1b", "Completed", result=40)
    sim.drive()  # signals kid-1b, which has closed: failed at once; starts kid-2, signals it
    sim.child_signaled(max(sim.state.external))
    sim.taken_ids.add("kid-2")
    sim.drive()  # starts kid-2 again: taken; waits for kid-2
    sim.child_closed("kid-2", "Failed", failure={"type": "KidBroke", "message": "no"})
    sim.drive()
    sim.child_closed("kid-third", "Terminated", reason="by hand")
    sim.drive()
    sim.child_closed("kid-fourth", "TimedOut")
    sim.drive()  # starts kid-patient and kid-hasty, cancels kid-patient and waits
    sim.child_closed("kid-patient", "Canceled", details=None)
    sim.drive()  # cancels kid-hasty, and stops waiting for it
    sim.child_closed("kid-hasty", "Canceled", details=None)  # nobody waits for it
    sim.drive()
    return sim


def _rolling() -> EngineSim:
    from fixtures import golden_workflows as g

    sim = EngineSim(g.golden_rolling, 2, workflow_id="rolling-1", run_id="6d0e-golden-rolling")
    sim.run_task()  # sleeps
    sim.fire()
    scheduled = sim.start_task()
    sim.signal("news", None)  # arrives during the task: the continue-as-new waits a task
    sim.finish_task(scheduled)
    sim.drive()  # the code, replayed, asks for it again
    return sim


def _raise(type_: str, message: str) -> Any:
    from sdk._errors import ApplicationError

    raise ApplicationError(message, type=type_, non_retryable=True)


SCENARIOS = {
    "order": ("fixtures.golden_workflows:golden_order", _order),
    "approval": ("fixtures.golden_workflows:golden_approval", _approval),
    "cancel": ("fixtures.golden_workflows:golden_cancel", _cancel),
    "checkout": ("fixtures.golden_workflows:golden_checkout", _checkout),
    "reminder": ("fixtures.golden_workflows:golden_reminder", _reminder),
    "family": ("fixtures.golden_workflows:golden_family", _family),
    "rolling": ("fixtures.golden_workflows:golden_rolling", _rolling),
}


def _load_workflow(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _regenerate(name: str) -> None:
    ref, build = SCENARIOS[name]
    sim = build()
    sim.check_replay()
    for event in sim.history:  # keep the files free of this machine's paths
        data = event["attributes"].get("data")
        for failure in (event["attributes"].get("failure"),
                        data.get("failure") if isinstance(data, dict) else None):
            if isinstance(failure, dict) and failure.get("stack"):
                failure["stack"] = "Traceback (most recent call last): ... (trimmed)"
    HISTORIES.mkdir(parents=True, exist_ok=True)
    doc = {
        "workflow": ref,
        "workflow_id": sim.workflow_id,
        "run_id": sim.run_id,
        "status": sim.status.value,
        "final_command": sim.final,
        "events": sim.history,
    }
    (HISTORIES / f"{name}.json").write_text(json.dumps(doc, indent=1) + "\n")


def _golden(name: str) -> dict[str, Any]:
    if os.environ.get("SCHED_REGEN_GOLDEN") == "1":
        _regenerate(name)
    doc: dict[str, Any] = json.loads((HISTORIES / f"{name}.json").read_text())
    return doc


def _comparable(command: dict[str, Any] | None) -> dict[str, Any] | None:
    """A closing command without what depends on the machine (a failure's stack)."""
    if command is None or command.get("kind") != "fail_workflow":
        return command
    failure = command["failure"]
    return {"kind": "fail_workflow", "type": failure["type"], "message": failure["message"]}


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_golden_history_replays(name: str) -> None:
    doc = _golden(name)
    definition = workflow_definition(_load_workflow(doc["workflow"]))
    events = doc["events"]
    assert events[-1]["event_type"].startswith("WorkflowExecution")  # a closed run

    replay = replay_history(definition, events, workflow_id=doc["workflow_id"],
                            run_id=doc["run_id"])
    assert replay.failure is None, replay.failure
    assert _comparable(replay.final_command) == _comparable(doc["final_command"])

    # Every task, taken as the current one of a worker that has just been handed the
    # history up to it, produces the commands that history then recorded.
    started = [i for i, e in enumerate(events) if e["event_type"] == "WorkflowTaskStarted"]
    outcomes = ("WorkflowTaskCompleted", "WorkflowTaskFailed", "WorkflowTaskTimedOut")
    completed_tasks = [i for i in started  # input events may come between start and outcome
                       if next(e["event_type"] for e in events[i + 1:]
                               if e["event_type"] in outcomes) == "WorkflowTaskCompleted"]
    assert len(completed_tasks) == len(replay.commands)
    for index, commands in zip(completed_tasks, replay.commands, strict=True):
        instance = WorkflowInstance(definition, workflow_id=doc["workflow_id"],
                                    run_id=doc["run_id"], workflow_type=definition.name,
                                    task_queue="q")
        result = instance.activate(events[: index + 1])
        while result.local_activities:  # run again, they give what the markers recorded
            result = instance.resolve_local_activities(_recorded_outcomes(events, index))
        assert result.failure is None, result.failure
        assert result.commands == commands


def _recorded_outcomes(events: list[dict[str, Any]], started: int
                       ) -> dict[int, LocalActivityOutcome]:
    """The local activity outcomes the task started at ``events[started]`` recorded."""
    outcomes: dict[int, LocalActivityOutcome] = {}
    for event in events[started + 2:]:
        if event["event_type"] != "MarkerRecorded":
            if event["event_type"] in ("WorkflowTaskScheduled", "WorkflowTaskStarted"):
                break
            continue
        attributes = event["attributes"]
        if attributes["marker_name"] == LOCAL_ACTIVITY_MARKER:
            data = attributes["data"]
            outcomes[attributes["seq"]] = LocalActivityOutcome(
                attributes["seq"], result=data.get("result"), failure=data.get("failure"),
                attempts=data["attempts"], timeout_type=data.get("timeout_type"))
    return outcomes


def test_golden_history_catches_changed_code() -> None:
    from fixtures import golden_workflows as g

    doc = _golden("order")
    result = replay_history(workflow_definition(g.golden_approval), doc["events"],
                            workflow_id=doc["workflow_id"], run_id=doc["run_id"])
    assert result.cause == "nondeterminism"
