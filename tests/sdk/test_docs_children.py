"""docs/sdk.md's child-workflow and continue-as-new examples, run against the engine's core
(the replay simulator of tests/sdk/test_runtime.py)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from workflows.core.state import Status

from .test_runtime import EngineSim

DOC = Path(__file__).resolve().parents[2] / "docs" / "sdk.md"


def example(name: str) -> dict[str, Any]:
    """Run the code block under ``<!-- example: name -->``; its names."""
    match = re.search(rf"<!-- example: {name} -->\n```python\n(.*?)```", DOC.read_text(),
                      re.DOTALL)
    assert match, f"docs/sdk.md has no example {name!r}"
    namespace: dict[str, Any] = {"__name__": f"docs_example_{name}"}
    exec(compile(match.group(1), f"docs/sdk.md:{name}", "exec"), namespace)
    return namespace


def test_the_child_workflow_example_runs() -> None:
    ns = example("children")
    sim = EngineSim(ns["fulfil"], {"id": 7}, workflow_id="order-7", run_id="run-order-7")
    sim.drive()
    started = [e["attributes"] for e in sim.history
               if e["event_type"] == "StartChildWorkflowExecutionInitiated"]
    assert [(s["workflow_id"], s["parent_close_policy"]) for s in started] == [
        ("ship-7", "terminate")]
    sim.child_signaled(max(sim.state.external))
    sim.drive()
    sim.child_closed("ship-7", "Completed", result="shipped 7")
    sim.drive()
    assert sim.status is Status.COMPLETED
    assert sim.final == {"kind": "complete_workflow", "result": {
        "status": "done", "shipped": "shipped 7", "child": "ship-7"}}
    sim.check_replay()


def test_the_child_workflow_example_reports_a_failed_child() -> None:
    ns = example("children")
    sim = EngineSim(ns["fulfil"], {"id": 8})
    sim.drive()
    sim.child_signaled(max(sim.state.external))
    sim.drive()
    sim.child_closed("ship-8", "Failed", failure={"type": "NoTruck", "message": "none"})
    sim.drive()
    assert sim.final["result"] == {"status": "failed", "cause": "NoTruck"}


def test_the_continue_as_new_example_runs() -> None:
    ns = example("continue_as_new")
    sim = EngineSim(ns["pages"], {"page": 0, "last": 5, "done": 0}).drive()
    assert sim.status is Status.CONTINUED_AS_NEW
    assert sim.final == {"kind": "continue_as_new", "workflow_type": None, "task_queue": None,
                         "input": {"page": 2, "last": 5, "done": 20}}
    sim.check_replay()
