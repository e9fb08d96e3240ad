"""Versioning on a real engine and worker processes: runs started under v1 and blocked, then a
deploy of v2 that uses ``ctx.patched``: the old runs finish on the old branch, runs started
after the deploy on the new one."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sdk

from .harness import Engine, Stack, wait_for

QUEUE = "versioning"
V1 = "tests.e2e.versioning_v1"
V2 = "tests.e2e.versioning_v2"


def waiting(handle: sdk.WorkflowHandle) -> bool:
    """The run's first workflow task completed: it waits for its signal."""
    return any(e["event_type"] == "WorkflowTaskCompleted" for e in handle.history())


def patch_markers(handle: sdk.WorkflowHandle) -> list[Any]:
    return [e["attributes"]["data"] for e in handle.history()
            if e["event_type"] == "MarkerRecorded"
            and e["attributes"]["marker_name"] == "patch"]


def test_old_runs_keep_the_old_branch_after_a_deploy_that_patches_it(
        stack: Stack, engine: Engine, logs: Path) -> None:
    v1 = stack.worker(V1, task_queue=QUEUE, engine=engine, log=logs / "versioning-v1.log")
    v2 = None
    client = sdk.Client(engine.url, token=stack.token)
    try:
        old = [client.start_workflow("greeter", f"old-{i}", task_queue=QUEUE)
               for i in range(2)]
        for handle in old:
            wait_for(lambda h=handle: waiting(h), timeout=60)
        assert v1.stop() == 0
        # The deploy: v2's worker has none of the old runs cached; it replays them.
        v2 = stack.worker(V2, task_queue=QUEUE, engine=engine,
                          log=logs / "versioning-v2.log")
        new = [client.start_workflow("greeter", f"new-{i}", task_queue=QUEUE)
               for i in range(2)]
        for handle in new:
            wait_for(lambda h=handle: waiting(h), timeout=60)
        for handle in old + new:
            handle.signal("go", "ops")
        for i, handle in enumerate(old):
            assert handle.result(timeout=60) == {"branch": "v1", "greeting": f"hello old-{i}",
                                                 "by": "ops"}
            assert patch_markers(handle) == []
            assert handle.describe()["last_task_failure"] is None  # no non-determinism
        for i, handle in enumerate(new):
            assert handle.result(timeout=60) == {
                "branch": "v2", "greeting": f"hello new-{i}, welcome back", "by": "ops"}
            assert patch_markers(handle) == [{"patch_id": "warm-greeting",
                                              "deprecated": False}]
    finally:
        client.close()
        v1.stop()
        if v2 is not None:
            v2.stop()
