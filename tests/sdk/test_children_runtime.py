"""The runtime's side of child workflows and continue-as-new: commands, handles, replay."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sdk import WorkflowContext, workflow
from workflows.core.state import Status

from .test_runtime import EngineSim


@workflow
async def abandons(ctx: WorkflowContext, kind: str) -> Any:
    handle = await ctx.start_child_workflow("kid", workflow_id="k", cancellation_type=kind)
    handle.cancel()
    try:
        return await handle
    except asyncio.CancelledError:
        return "cancelled"


@pytest.mark.parametrize(("kind", "asks"), [("abandon", False), ("try_cancel", True)])
def test_abandon_and_try_cancel_stop_waiting_at_once(kind: str, asks: bool) -> None:
    sim = EngineSim(abandons, kind).drive()
    assert sim.final == {"kind": "complete_workflow", "result": "cancelled"}
    assert ("request_cancel_external_workflow" in sim.kinds(1)) is asks
    sim.check_replay()


def test_wait_cancellation_completed_gets_the_result_of_a_child_that_completed_anyway() -> None:
    sim = EngineSim(abandons, "wait_cancellation_completed").drive()
    assert sim.kinds(1) == ["request_cancel_external_workflow"]
    sim.child_closed("k", "Completed", result="finished first")
    sim.drive()
    assert sim.final == {"kind": "complete_workflow", "result": "finished first"}
    sim.check_replay()


@workflow
async def info_of_child(ctx: WorkflowContext, _: Any) -> Any:
    info = ctx.info
    return [info.parent_workflow_id, info.parent_run_id, info.continued_from_run_id]


def test_info_names_the_parent_and_the_run_continued_from() -> None:
    sim = EngineSim(info_of_child)
    sim.history[0]["attributes"]["parent"] = {"workflow_id": "mom", "run_id": "r-mom"}
    sim.history[0]["attributes"]["continued_from_run_id"] = "r-before"
    sim.drive()
    assert sim.final["result"] == ["mom", "r-mom", "r-before"]


@workflow
async def stubborn(ctx: WorkflowContext, n: int) -> Any:
    try:
        ctx.continue_as_new(n + 1, workflow="other", task_queue="elsewhere")
    except Exception:  # a ContinueAsNewError is not an Exception: not caught here
        return "caught"
    return "unreachable"


def test_continue_as_new_is_not_caught_by_except_exception() -> None:
    sim = EngineSim(stubborn, 1).drive()
    assert sim.status is Status.CONTINUED_AS_NEW
    assert sim.final == {"kind": "continue_as_new", "input": 2, "workflow_type": "other",
                         "task_queue": "elsewhere"}
    continued = sim.history[-1]["attributes"]
    assert (continued["workflow_type"], continued["task_queue"]) == ("other", "elsewhere")


@workflow
async def bad_child(ctx: WorkflowContext, case: str) -> Any:
    choices: dict[str, dict[str, Any]] = {
        "id": {"workflow_id": " padded"}, "policy": {"parent_close_policy": "explode"},
        "cancel": {"cancellation_type": "never"},
        "retry": {"retry_policy": {"maximum_attempts": 2}},
    }
    arguments = choices[case]
    try:
        await ctx.start_child_workflow("kid", **arguments)
    except (ValueError, TypeError) as err:
        return str(err)
    return "accepted"


@pytest.mark.parametrize(("case", "message"), [
    ("id", "workflow_id must not begin with whitespace"),
    ("policy", "parent_close_policy must be one of"),
    ("cancel", "cancellation_type must be one of"),
    ("retry", "retry_policy must be an sdk.RetryPolicy"),
])
def test_bad_child_arguments_are_refused_in_the_workflow(case: str, message: str) -> None:
    sim = EngineSim(bad_child, case).drive()
    assert message in sim.final["result"]
    assert sim.kinds(0) == ["complete_workflow"]


@workflow
async def unnamed_child(ctx: WorkflowContext, _: Any) -> Any:
    handle = await ctx.start_child_workflow("kid")
    return handle.workflow_id


def test_a_childs_default_id_is_drawn_from_the_parent_and_replays() -> None:
    sim = EngineSim(unnamed_child, workflow_id="mom", run_id="abcdef123456").drive()
    assert sim.final["result"] == "mom-abcdef12-child-1"
    sim.check_replay()
