"""Activity cancellation types in the runtime: what cancelling a handle does, by
``cancellation_type`` (``try_cancel``, ``wait_cancellation_completed``, ``abandon``)."""

from __future__ import annotations

import asyncio
from typing import Any

import sdk
from sdk.protocol import EventType
from workflows.core import decide
from workflows.core.state import Status

from .test_runtime import EngineSim


@sdk.workflow
async def cancels_after_a_timer(ctx: sdk.WorkflowContext, cancellation_type: str) -> Any:
    handle = ctx.start_activity("slow", "x", start_to_close_timeout=60,
                                cancellation_type=cancellation_type)
    await ctx.sleep(5)
    handle.cancel()
    try:
        return {"result": await handle}
    except asyncio.CancelledError:
        return {"canceled": True, "replaying": ctx.is_replaying}


def _until_cancel(kind: str) -> EngineSim:
    sim = EngineSim(cancels_after_a_timer, kind)
    sim.run_task()
    assert sim.kinds(0) == ["schedule_activity", "start_timer"]
    sim.fire(2)
    sim.run_task()
    return sim


def _canceled(sim: EngineSim, seq: int = 1) -> None:
    sim._apply(decide.close_activity(sim.state, seq=seq, outcome=EventType.ACTIVITY_TASK_CANCELED,
                                     now=sim.now, attempt=1, worker="w1",
                                     details={"last": "heartbeat"}))


def test_try_cancel_asks_and_gives_up_on_the_activity_at_once() -> None:
    sim = _until_cancel("try_cancel")
    assert sim.kinds(1) == ["request_cancel_activity", "complete_workflow"]
    assert sim.final["result"] == {"canceled": True, "replaying": False}


def test_abandon_does_not_tell_the_engine() -> None:
    sim = _until_cancel("abandon")
    assert sim.kinds(1) == ["complete_workflow"]
    assert sim.final["result"] == {"canceled": True, "replaying": False}
    assert "ActivityTaskCancelRequested" not in [e["event_type"] for e in sim.history]


def test_wait_cancellation_completed_waits_for_the_activity_to_report_canceled() -> None:
    sim = _until_cancel("wait_cancellation_completed")
    assert sim.kinds(1) == ["request_cancel_activity"]
    assert sim.status is Status.RUNNING  # the workflow still waits on the handle
    _canceled(sim)
    sim.run_task()
    assert sim.kinds(2) == ["complete_workflow"]
    assert sim.final["result"] == {"canceled": True, "replaying": False}


def test_wait_cancellation_completed_keeps_a_result_that_came_instead() -> None:
    sim = _until_cancel("wait_cancellation_completed")
    sim.complete(1, "finished anyway")
    sim.run_task()
    assert sim.final["result"] == {"result": "finished anyway"}


def test_wait_cancellation_completed_replays_from_scratch_to_the_same_commands() -> None:
    sim = EngineSim(cancels_after_a_timer, "wait_cancellation_completed", sticky=False)
    sim.run_task()
    sim.fire(2)
    sim.run_task()
    _canceled(sim)
    sim.run_task()
    assert sim.final["result"] == {"canceled": True, "replaying": False}
    assert [sim.kinds(i) for i in range(3)] == [
        ["schedule_activity", "start_timer"], ["request_cancel_activity"], ["complete_workflow"]]


@sdk.workflow
async def cancelled_from_outside(ctx: sdk.WorkflowContext, _: Any) -> Any:
    return await ctx.execute_activity("slow", None, start_to_close_timeout=60,
                                      cancellation_type="wait_cancellation_completed")


def test_a_workflow_cancel_waits_for_its_activity_then_cancels_the_run() -> None:
    sim = EngineSim(cancelled_from_outside)
    sim.run_task()
    sim.cancel()
    sim.run_task()
    assert sim.kinds(1) == ["request_cancel_activity"]
    waiting = sim.status
    _canceled(sim)
    sim.run_task()
    assert sim.kinds(2) == ["cancel_workflow"]
    assert (waiting, sim.status) == (Status.RUNNING, Status.CANCELED)


def test_an_unknown_cancellation_type_is_refused() -> None:
    @sdk.workflow
    async def bad(ctx: sdk.WorkflowContext, _: Any) -> None:
        ctx.start_activity("a", start_to_close_timeout=1, cancellation_type="later")

    sim = EngineSim(bad)
    result = sim.run_task()
    assert result.cause == "workflow_error"
    assert result.failure is not None and result.failure["type"] == "ValueError"
    assert "cancellation_type must be one of" in result.failure["message"]


def test_the_docs_example_waits_for_the_clean_up(monkeypatch: Any) -> None:
    """docs/sdk.md's cancellation example, run as written."""
    import sys
    import types
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "sdk.md").read_text()
    section = text.split("### Cancellation types", 1)[1].split("### Async completion", 1)[0]
    code = section.split("```python\n", 1)[1].split("```", 1)[0]
    module = types.ModuleType("docs_cancellation_example")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    module.__dict__.update(asyncio=asyncio, sdk=sdk, cleans_up_on_cancel="cleans_up_on_cancel")
    exec(compile(code, "docs/sdk.md", "exec"), module.__dict__)

    sim = EngineSim(module.with_cleanup)
    sim.run_task()
    sim.fire(2)
    sim.run_task()
    assert sim.kinds(1) == ["request_cancel_activity"]
    _canceled(sim)
    sim.run_task()
    assert sim.final == {"kind": "complete_workflow", "result": "canceled"}
