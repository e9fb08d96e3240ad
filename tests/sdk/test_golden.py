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
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import sdk
from sdk._errors import failure_from_exception
from sdk._runtime import LocalActivityOutcome, WorkflowInstance, replay_history
from sdk._workflow import workflow_definition
from sdk.protocol import LOCAL_ACTIVITY_MARKER, PATCH_MARKER
from sdk.protocol.failures import failure_chain
from sdk.testing import Replayer
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


def _signal_with_start() -> EngineSim:
    from fixtures import golden_workflows as g

    # Started by a signal-with-start: the signal is in the history before the first task.
    sim = EngineSim(g.golden_approval, ["ann", "bob"], workflow_id="approval-sws",
                    run_id="5e0a-golden-signal-with-start",
                    start_signal=("comment", "from the start"))
    sim.run_task()
    sim.advance(30)
    sim.signal("comment", "later")  # a second signal-with-start, to the open run
    sim.signal("approve", "dana")
    sim.drive({"notify": lambda who: f"told {who}"})
    return sim


def _signal_handlers() -> EngineSim:
    from fixtures import golden_workflows as g

    sim = EngineSim(g.golden_handlers, 3, workflow_id="handlers-1",
                    run_id="4d2b-golden-handlers")
    sim.signal("add", 1)  # before the handlers are set: buffered for them
    sim.signal("note", "first")
    sim.signal("add", 2)
    sim.run_task()  # waits for "start"
    sim.advance(5)
    sim.signal("start", "go")
    sim.run_task()  # handlers set: add 1, add 2, the note's activity; a 30 s condition timer
    sim.advance(1)
    (seq,) = sim.state.activities
    sim.complete(seq, "told note:first")
    sim.run_task()
    sim.advance(30)
    sim.fire()
    sim.run_task()  # TimeoutError; the next condition starts its own timer
    sim.advance(10)
    sim.signal("add", 3)
    sim.run_task()  # met: its timer is cancelled, the handlers removed
    sim.signal("add", 4)
    sim.drive()
    return sim


def _refund() -> EngineSim:
    from fixtures import golden_workflows as g
    from sdk.protocol import EventType
    from workflows.core import decide

    sim = EngineSim(g.golden_refund, {"order_id": 3, "amount": 12.5}, workflow_id="refund-3",
                    run_id="9b1d-golden-refund")
    sim.run_task()  # hold_funds (seq 1), a timer (seq 2)
    sim.fire(2)
    sim.run_task()  # cancel hold_funds, and wait
    sim.advance(1)
    sim._apply(decide.close_activity(sim.state, seq=1, outcome=EventType.ACTIVITY_TASK_CANCELED,
                                     now=sim.now, attempt=1, worker="w1", details=None))
    sim.run_task()  # refund (seq 3)
    try:
        g.refund(None, g.RefundRequest(3, 12.5))  # type: ignore[arg-type]
    except sdk.ApplicationError as err:
        sim.fail(3, failure_from_exception(err))
    sim.drive()
    return sim


def _patch_run(fn: Any, run_id: str) -> EngineSim:
    sim = EngineSim(fn, "ann", workflow_id=f"patch-{run_id}", run_id=run_id)
    sim.run_task()  # blocks on "go"
    sim.advance(60)
    sim.signal("go", "bob")
    sim.drive({"notify": lambda who: f"told {who}",
               "greet": lambda who: f"hello {who}, welcome"})
    return sim


def _patch_old() -> EngineSim:
    """A run of the code before the patch (v1), which v2's ``patched`` must replay."""
    from fixtures import golden_workflows as g

    return _patch_run(g.golden_patch_v1, "8a41-golden-patch-old")


def _patch_new() -> EngineSim:
    from fixtures import golden_workflows as g

    return _patch_run(g.golden_patch, "8a42-golden-patch-new")


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


def _cart() -> EngineSim:
    from fixtures import golden_workflows as g

    sim = EngineSim(g.golden_cart, "ann", workflow_id="cart-1", run_id="5e1f-golden-cart")
    sim.update("u1", "add", "tea")  # before its handler is set: it waits for it
    sim.run_task()
    sim.advance(5)
    sim.update("u2", "checkout", None)  # runs an activity, then sleeps
    sim.update("u3", "add", "cup")
    sim.run_task()  # u2's activity; u3 completed
    sim.advance(1)
    sim.update("u4", "checkout", "SPRING")  # a second checkout: it too runs
    sim.drive({"golden.price_cart": lambda items: 3 * len(items),
               "price_cart": lambda items: 3 * len(items)})
    return sim


def _empty_cart() -> EngineSim:
    from fixtures import golden_workflows as g

    sim = EngineSim(g.golden_cart, "bob", workflow_id="cart-2", run_id="8a3c-golden-cart")
    sim.run_task()
    sim.update("u1", "checkout", None)  # fails the update (EmptyCart), not the run
    sim.run_task()
    sim.update("u2", "add", "tea")
    sim.update("u3", "checkout", None)
    sim.drive({"golden.price_cart": lambda items: 3 * len(items),
               "price_cart": lambda items: 3 * len(items)})
    return sim


def _flaky_parent() -> EngineSim:
    from fixtures import golden_workflows as g

    sim = EngineSim(g.golden_flaky_parent, 5, workflow_id="flaky-parent-1",
                    run_id="3c9d-golden-flaky-parent")
    sim.drive()  # starts flaky-1 with its retry policy; its first run fails, the second ends
    sim.child_closed("flaky-1", "Completed", result={"n": 5, "attempt": 2})
    sim.drive()
    return sim


def _flaky_kid() -> EngineSim:
    from fixtures import golden_workflows as g
    from workflows.core import commands as c

    policy = c.RetryPolicy(initial_interval_ms=1000, maximum_attempts=3,
                           non_retryable_error_types=("Fatal",))
    sim = EngineSim(g.golden_flaky_kid, 5, workflow_id="flaky-1", run_id="9e2a-golden-flaky-2",
                    start_options={"parent": {"workflow_id": "flaky-parent-1",
                                              "run_id": "3c9d-golden-flaky-parent"},
                                   "retry_policy": policy, "attempt": 2,
                                   "first_workflow_task_backoff_ms": 1000})
    sim.advance(1)
    sim.end_backoff()  # the second run's first workflow task waits out the back-off
    sim.drive()
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
    "signal_handlers": ("fixtures.golden_workflows:golden_handlers", _signal_handlers),
    "signal_with_start": ("fixtures.golden_workflows:golden_approval", _signal_with_start),
    "patch_old": ("fixtures.golden_workflows:golden_patch", _patch_old),
    "patch_new": ("fixtures.golden_workflows:golden_patch", _patch_new),
    "refund": ("fixtures.golden_workflows:golden_refund", _refund),
    "family": ("fixtures.golden_workflows:golden_family", _family),
    "rolling": ("fixtures.golden_workflows:golden_rolling", _rolling),
    "cart": ("fixtures.golden_workflows:golden_cart", _cart),
    "empty_cart": ("fixtures.golden_workflows:golden_cart", _empty_cart),
    "flaky_parent": ("fixtures.golden_workflows:golden_flaky_parent", _flaky_parent),
    "flaky_kid": ("fixtures.golden_workflows:golden_flaky_kid", _flaky_kid),
}


# Histories recorded by code older than the one replaying them: the tasks (0 = the first) in
# which the newer code calls ``patched``, which as a current task (not a replay) answers True.
NEW_BRANCH_WHEN_CURRENT: dict[str, set[int]] = {"patch_old": {0}}


def _load_workflow(ref: str) -> Any:
    module, _, name = ref.partition(":")
    return getattr(importlib.import_module(module), name)


def _regenerate(name: str) -> None:
    ref, build = SCENARIOS[name]
    sim = build()
    sim.check_replay()
    final = sim.final
    for attributes in [e["attributes"] for e in sim.history] + [final]:
        # keep the files free of this machine's paths
        data = attributes.get("data")
        for outer in (attributes.get("failure"),
                      data.get("failure") if isinstance(data, dict) else None):
            for failure in failure_chain(outer):
                if isinstance(failure, dict) and failure.get("stack"):
                    failure["stack"] = "Traceback (most recent call last): ... (trimmed)"
    HISTORIES.mkdir(parents=True, exist_ok=True)
    doc = {
        "workflow": ref,
        "workflow_id": sim.workflow_id,
        "run_id": sim.run_id,
        "status": sim.status.value,
        "final_command": final,
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
    causes = [(f["type"], f["message"], f["details"]) for f in failure_chain(failure)[1:]]
    return {"kind": "fail_workflow", "type": failure["type"], "message": failure["message"],
            "causes": causes}


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
    for task, (index, commands) in enumerate(zip(completed_tasks, replay.commands,
                                                  strict=True)):
        instance = WorkflowInstance(definition, workflow_id=doc["workflow_id"],
                                    run_id=doc["run_id"], workflow_type=definition.name,
                                    task_queue="q")
        result = instance.activate(events[: index + 1])
        while result.local_activities:  # run again, they give what the markers recorded
            result = instance.resolve_local_activities(_recorded_outcomes(events, index))
        assert result.failure is None, result.failure
        if task in NEW_BRANCH_WHEN_CURRENT.get(name, ()):
            # Run for the first time by this code, the task takes the patch's new branch.
            assert result.commands != commands
            assert result.commands and result.commands[0]["marker_name"] == PATCH_MARKER
        else:
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


def test_golden_history_catches_changed_code(
        replayer: Callable[[list[Any]], Replayer]) -> None:
    """The order history against other code deployed under its name (the approval
    workflow's), replayed as a user would replay an exported history."""
    from fixtures import golden_workflows as g

    @sdk.workflow(name="golden.order")
    async def changed(ctx: sdk.WorkflowContext, people: list[str]) -> Any:
        return await g.golden_approval(ctx, people)

    with pytest.raises(sdk.NonDeterminismError, match="ActivityTaskScheduled"):
        replayer([changed]).replay(HISTORIES / "order.json")


@pytest.mark.parametrize(("name", "workflow", "branch"), [
    ("patch_old", "golden_patch_v1", "v1"),
    ("patch_new", "golden_patch_deprecated", "v2"),  # the next deploy: deprecate_patch
    ("patch_new", "golden_patch_removed", "v2"),  # the one after: the call dropped
])
def test_patch_histories_replay_on_every_deploy_that_must_run_them(
        name: str, workflow: str, branch: str) -> None:
    doc = _golden(name)
    definition = workflow_definition(_load_workflow(f"fixtures.golden_workflows:{workflow}"))
    replay = replay_history(definition, doc["events"], workflow_id=doc["workflow_id"],
                            run_id=doc["run_id"])
    assert replay.failure is None, replay.failure
    final = replay.final_command
    assert final is not None and final["result"]["branch"] == branch
    assert doc["final_command"]["result"]["branch"] == branch


def test_patch_histories_of_the_other_branch_are_nondeterministic() -> None:
    from fixtures import golden_workflows as g

    # Code that takes the new branch unconditionally cannot run a run of the old code...
    doc = _golden("patch_old")
    result = replay_history(workflow_definition(g.golden_patch_deprecated), doc["events"],
                            workflow_id=doc["workflow_id"], run_id=doc["run_id"])
    assert result.cause == "nondeterminism"
    # ...and the old code cannot run a run that took the new one.
    doc = _golden("patch_new")
    result = replay_history(workflow_definition(g.golden_patch_v1), doc["events"],
                            workflow_id=doc["workflow_id"], run_id=doc["run_id"])
    assert result.cause == "nondeterminism"
