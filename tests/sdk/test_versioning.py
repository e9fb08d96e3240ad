"""``ctx.patched`` / ``ctx.deprecate_patch``: patch markers in history, old runs on the old
branch, new runs on the new one, and every deploy step of a patch's life replaying."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sdk._runtime import WorkflowInstance, replay_history
from sdk._workflow import WorkflowContext, workflow, workflow_definition
from sdk.protocol import PATCH_MARKER
from tests.sdk.test_runtime import EngineSim

ACTIVITIES = {"old": lambda x: f"old {x}", "new": lambda x: f"new {x}",
              "step": lambda x: f"step {x}"}


@workflow(name="versioned")
async def v1(ctx: WorkflowContext, _: Any) -> str:
    await ctx.sleep(5)
    result: str = await ctx.execute_activity("old", "a")
    return result


@workflow(name="versioned")
async def v2(ctx: WorkflowContext, _: Any) -> str:
    await ctx.sleep(5)
    if ctx.patched("new-activity"):
        result: str = await ctx.execute_activity("new", "a")
    else:
        result = await ctx.execute_activity("old", "a")
    assert ctx.patched("new-activity") == ctx.patched("new-activity")  # memoised
    return result


@workflow(name="versioned")
async def v3(ctx: WorkflowContext, _: Any) -> str:
    await ctx.sleep(5)
    ctx.deprecate_patch("new-activity")
    result: str = await ctx.execute_activity("new", "a")
    return result


@workflow(name="versioned")
async def v4(ctx: WorkflowContext, _: Any) -> str:
    await ctx.sleep(5)
    result: str = await ctx.execute_activity("new", "a")
    return result


def run(fn: Any) -> EngineSim:
    sim = EngineSim(fn).drive(ACTIVITIES)
    sim.check_replay()
    return sim


def replay(fn: Any, sim: EngineSim) -> Any:
    return replay_history(workflow_definition(fn), sim.history, workflow_id=sim.workflow_id,
                          run_id=sim.run_id)


def markers(sim: EngineSim) -> list[dict[str, Any]]:
    return [e["attributes"] for e in sim.history if e["event_type"] == "MarkerRecorded"]


def test_patched_records_one_marker_and_takes_the_new_branch_on_a_new_run() -> None:
    sim = run(v2)
    assert sim.final["result"] == "new a"
    assert markers(sim) == [{"seq": 2, "marker_name": PATCH_MARKER,
                             "data": {"patch_id": "new-activity", "deprecated": False}}]
    assert sim.kinds(1) == ["record_marker", "schedule_activity"]


def test_an_old_run_replays_on_the_old_branch_and_records_nothing() -> None:
    old = run(v1)
    result = replay(v2, old)
    assert result.failure is None, result.failure
    assert result.final_command == {"kind": "complete_workflow", "result": "old a"}
    assert all(cmd["kind"] != "record_marker" for batch in result.commands for cmd in batch)


def test_an_old_run_continued_by_new_code_stays_on_the_old_branch() -> None:
    # v1 ran the first tasks; the v2 worker (cache miss) replays them, then runs the rest.
    sim = EngineSim(v1)
    sim.run_task()  # sleep(5)
    sim.fire()
    sim.run_task()  # v1 scheduled "old"
    sim.definition = workflow_definition(v2)
    sim.instance = None  # the deploy: a new worker, whose first task replays the history
    sim.drive(ACTIVITIES)
    assert sim.final["result"] == "old a"
    assert not markers(sim)


def test_the_patched_call_in_a_new_task_of_an_old_run_takes_the_new_branch() -> None:
    # Temporal's rule: code running a point of the run for the first time is a new execution.
    sim = EngineSim(v1)
    sim.run_task()  # v1 got as far as the sleep
    sim.definition = workflow_definition(v2)
    sim.instance = None
    sim.drive(ACTIVITIES)
    assert sim.final["result"] == "new a"
    assert [m["data"]["patch_id"] for m in markers(sim)] == ["new-activity"]


@pytest.mark.parametrize("later", [v2, v3, v4])
def test_every_later_deploy_replays_a_run_with_the_marker(later: Any) -> None:
    new = run(v2)
    result = replay(later, new)
    assert result.failure is None, result.failure
    assert result.final_command == {"kind": "complete_workflow", "result": "new a"}


def test_deprecate_patch_records_the_marker_without_branching() -> None:
    sim = run(v3)
    assert [m["data"] for m in markers(sim)] == [{"patch_id": "new-activity",
                                                  "deprecated": True}]
    for later in (v2, v4):  # a run of v3 replays on the code before and after it
        result = replay(later, sim)
        assert result.failure is None, result.failure


def test_code_that_dropped_the_call_is_only_nondeterministic_for_old_runs() -> None:
    result = replay(v4, run(v1))
    assert result.cause == "nondeterminism"
    result = replay(v1, run(v2))
    assert result.cause == "nondeterminism"


@workflow(name="many")
async def with_patches(ctx: WorkflowContext, _: Any) -> list[Any]:
    got = [ctx.patched("a")]
    await ctx.sleep(1)
    ctx.deprecate_patch("b")
    got.append(await ctx.execute_activity("step", 1))
    got.append(ctx.patched("c"))
    got.append(await ctx.execute_activity("step", 2))
    return got


@workflow(name="many")
async def without_patches(ctx: WorkflowContext, _: Any) -> list[Any]:
    got: list[Any] = [True]
    await ctx.sleep(1)
    got.append(await ctx.execute_activity("step", 1))
    got.append(True)
    got.append(await ctx.execute_activity("step", 2))
    return got


@pytest.mark.parametrize("sticky", [True, False])
def test_markers_in_the_middle_of_a_task_keep_the_seqs_after_them(sticky: bool) -> None:
    sim = EngineSim(with_patches, sticky=sticky).drive(ACTIVITIES)
    sim.check_replay()
    assert [(m["seq"], m["data"]["patch_id"]) for m in markers(sim)] == [
        (1, "a"), (3, "b"), (5, "c")]
    result = replay(without_patches, sim)
    assert result.failure is None, result.failure
    # A worker that ran the history without the calls continues the run with new seqs.
    instance = WorkflowInstance(workflow_definition(without_patches), workflow_id="wf-1",
                                run_id="run-1", workflow_type="many", task_queue="q")
    last_started = max(i for i, e in enumerate(sim.history)
                       if e["event_type"] == "WorkflowTaskStarted")
    activation = instance.activate(sim.history[:last_started + 1])
    assert activation.failure is None, activation.failure


def test_patch_ids_are_names() -> None:
    @workflow
    async def bad_ids(ctx: WorkflowContext, what: Any) -> str:
        try:
            ctx.patched(what)
        except (TypeError, ValueError) as err:
            return type(err).__name__
        return "accepted"

    assert EngineSim(bad_ids, 3).drive().final["result"] == "TypeError"
    assert EngineSim(bad_ids, "").drive().final["result"] == "InvalidName"
    assert EngineSim(bad_ids, " x").drive().final["result"] == "InvalidName"
    assert EngineSim(bad_ids, "ok").drive().final["result"] == "accepted"


# ---- hypothesis: a patch anywhere in a run ---------------------------------------------------

Step = tuple[str, int]  # ("sleep" | "activity", n)


def _steps_workflow(steps: list[Step], at: int, mode: str) -> Any:
    """A workflow doing ``steps``; before step ``at`` it calls ``patched`` (``mode``
    "patched"), ``deprecate_patch`` ("deprecated") or nothing (the code before the patch,
    "none", and after it, "dropped"); the branch picks the activities from ``at`` on."""

    @workflow(name="steps")
    async def steps_workflow(ctx: WorkflowContext, _: Any) -> list[Any]:
        new = mode in ("deprecated", "dropped")
        out: list[Any] = []
        for i, (kind, n) in enumerate(steps):
            if i == at:
                if mode == "patched":
                    new = ctx.patched("p")
                elif mode == "deprecated":
                    ctx.deprecate_patch("p")
            if kind == "sleep":
                await ctx.sleep(n)
            else:
                out.append(await ctx.execute_activity("new" if new and i >= at else "old", n))
        return out

    return steps_workflow


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=st.lists(st.tuples(st.sampled_from(["sleep", "activity"]), st.integers(1, 9)),
                      min_size=1, max_size=6),
       data=st.data())
def test_a_patch_anywhere_replays_on_both_branches(steps: list[Step], data: Any) -> None:
    at = data.draw(st.integers(0, len(steps) - 1))
    old_code = _steps_workflow(steps, at, "none")
    patched_code = _steps_workflow(steps, at, "patched")
    deprecated_code = _steps_workflow(steps, at, "deprecated")
    old = run(old_code)
    new = run(patched_code)
    wants_new = [f"new {n}" for i, (kind, n) in enumerate(steps)
                 if kind == "activity" and i >= at]
    assert all(r in new.final["result"] for r in wants_new)
    # The patched code runs old runs on the old branch, and its own on the new one.
    assert replay(patched_code, old).final_command == old.final
    assert replay(patched_code, new).final_command == new.final
    # Deprecating, then dropping the call, still runs what the patched code started.
    assert replay(deprecated_code, new).failure is None
    dropped_code = _steps_workflow(steps, at, "dropped")
    deprecated = run(deprecated_code)
    for code in (patched_code, dropped_code):
        assert replay(code, deprecated).failure is None
    assert replay(dropped_code, new).final_command == new.final
