"""``sdk.testing.Replayer`` on the golden histories of ``fixtures/histories/``: today's code
matches them; changed code raises ``sdk.NonDeterminismError``; what is not a history, or a
workflow the replayer was not given, says so."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import sdk
from fixtures import golden_workflows as g
from sdk.testing import Replayer, ReplayFailureError

HISTORIES = Path(__file__).resolve().parents[2] / "fixtures" / "histories"
GOLDEN = [g.golden_order, g.golden_approval, g.golden_cancel, g.golden_checkout,
          g.golden_reminder, g.golden_handlers, g.golden_patch, g.golden_refund,
          g.golden_family, g.golden_rolling, g.golden_cart, g.golden_flaky_parent,
          g.golden_flaky_kid]
MakeReplayer = Callable[[Iterable[Any]], Replayer]


@sdk.workflow(name="golden.order")
async def order_reordered(ctx: sdk.WorkflowContext, order: dict[str, Any]) -> Any:
    """golden.order, changed: it charges before it reserves."""
    await ctx.execute_activity(g.charge, order, start_to_close_timeout=30)
    return await ctx.execute_activity(g.reserve, order, start_to_close_timeout=30)


@sdk.workflow(name="golden.order")
async def order_without_grace(ctx: sdk.WorkflowContext, order: dict[str, Any]) -> Any:
    """golden.order, changed: the same steps, but no grace period before the release."""
    reservation = await ctx.execute_activity(g.reserve, order, start_to_close_timeout=30)
    await ctx.side_effect(lambda: f"INV-{order['id']}-1")
    try:
        await ctx.execute_activity(g.charge, order, start_to_close_timeout=30)
    except sdk.ActivityError:
        await ctx.execute_activity(g.release, reservation)
    return {}


@sdk.workflow(name="golden.reminder")
async def reminder_done_early(ctx: sdk.WorkflowContext, who: str) -> Any:
    """golden.reminder, changed: it returns after its first timer."""
    await ctx.sleep(timedelta(seconds=30))
    return "early"


@sdk.workflow(name="golden.approval")
async def approval_with_a_bug(ctx: sdk.WorkflowContext, people: list[str]) -> Any:
    found: dict[str, Any] = {}
    return found["missing"]


@pytest.mark.parametrize("path", sorted(HISTORIES.glob("*.json")), ids=lambda p: p.stem)
def test_the_golden_histories_replay_against_todays_code(path: Path,
                                                         replayer: MakeReplayer) -> None:
    replayer(GOLDEN).replay(path)


def test_a_history_in_any_of_its_exported_shapes() -> None:
    doc = json.loads((HISTORIES / "approval.json").read_text())
    replay = Replayer([g.golden_approval]).replay
    replay(json.dumps(doc))                                    # JSON text
    replay(json.dumps(doc).encode())                           # bytes
    replay(doc["events"], workflow_id=doc["workflow_id"], run_id=doc["run_id"])  # the events
    replay({"events": doc["events"], "next_after": None, "run_id": doc["run_id"],
            "status": "completed"})                            # a page of GET .../history
    replay(list(reversed(doc["events"])))                      # in any order: by event id


@pytest.mark.parametrize(("workflow", "history", "says"), [
    (order_reordered, "order", "golden.charge|charge"),
    (order_without_grace, "order", "TimerStarted"),
    (reminder_done_early, "reminder", "complete_workflow"),
])
def test_changed_code_raises_non_determinism(workflow: Any, history: str, says: str,
                                             replayer: MakeReplayer) -> None:
    with pytest.raises(sdk.NonDeterminismError, match=says):
        replayer([workflow]).replay(HISTORIES / f"{history}.json")


def test_a_bug_met_on_replay_is_a_replay_failure() -> None:
    with pytest.raises(ReplayFailureError) as info:
        Replayer([approval_with_a_bug]).replay(HISTORIES / "approval.json")
    assert info.value.cause == "workflow_error"
    assert info.value.failure is not None and info.value.failure["type"] == "KeyError"


def test_a_workflow_the_replayer_was_not_given() -> None:
    with pytest.raises(ReplayFailureError, match=r"golden\.order") as info:
        Replayer([g.golden_approval]).replay(HISTORIES / "order.json")
    assert info.value.cause == "unknown_workflow_type"


@pytest.mark.parametrize("history", [[], {"events": "no"}, [{"event_id": 1,
                                                             "event_type": "TimerFired"}]])
def test_what_is_not_a_history(history: Any) -> None:
    with pytest.raises(ReplayFailureError) as info:
        Replayer([g.golden_order]).replay(history)
    assert info.value.cause == "invalid_history"


def test_a_replayer_needs_workflows() -> None:
    with pytest.raises(ValueError, match="at least one workflow"):
        Replayer([])


def test_the_error_is_the_sdks_own() -> None:
    import sdk.testing

    assert sdk.testing.NonDeterminismError is sdk.NonDeterminismError
