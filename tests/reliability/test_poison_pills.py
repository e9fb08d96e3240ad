"""Poison pills: work that fails, hangs or kills its thread never takes the engine or the
worker down, and never delays other workflows."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

import sdk
from tests.e2e.harness import Stack, wait_for

from .conftest import MODULE


def test_a_workflow_task_that_always_fails_is_stuck_not_blocking(stack: Stack,
                                                                 logs: Path) -> None:
    engine = stack.engine(log=logs / "engine.log")
    original = stack.worker(MODULE, engine=engine, log=logs / "a.log",
                            extra_env={"REL_VARIANT": "a"})
    worker = None
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            stuck = client.start_workflow("poison")
            wait_for(lambda: "ActivityTaskCompleted" in event_types(stuck), timeout=30)
            wait_for(lambda: event_types(stuck)[-1] == "WorkflowTaskCompleted", timeout=30)
            original.stop()
            worker = stack.worker(MODULE, engine=engine, log=logs / "b.log",
                                  extra_env={"REL_VARIANT": "b"})
            stuck.signal("go")
            described = wait_for(lambda: (d := stuck.describe())["last_task_failure"]
                                 and d["last_task_failure"].get("attempt", 0) >= 3 and d,
                                 timeout=60)
            # Other workflows run at full speed beside it.
            started = time.monotonic()
            others = [client.start_workflow("healthy", i) for i in range(10)]
            assert [h.result(timeout=30) for h in others] == list(range(10))
            others_took = time.monotonic() - started
            # It backs off: the retries slow down instead of spinning.
            failures_then = count_failures(stuck)
            time.sleep(3.0)
            failures_later = count_failures(stuck)
    finally:
        if worker is not None:
            worker.stop()
        engine.stop()
    assert described["status"] == "running"
    failure = described["last_task_failure"]
    assert failure["cause"] == "nondeterminism"
    assert failure["message"] and failure["type"]
    assert others_took < 15
    assert failures_later - failures_then <= 3, "the failing task is retried without back-off"


def event_types(handle: sdk.WorkflowHandle) -> list[str]:
    return [e["event_type"] for e in handle.history()]


def count_failures(handle: sdk.WorkflowHandle) -> int:
    return sum(1 for e in handle.history() if e["event_type"] == "WorkflowTaskFailed")


def test_activities_that_raise_or_hang_leave_the_worker_serving(stack: Stack,
                                                                 logs: Path) -> None:
    engine = stack.engine(log=logs / "engine.log")
    worker = stack.worker(MODULE, engine=engine, log=logs / "worker.log")
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            raised = client.start_workflow("misbehaving_activity", "raises").result(timeout=30)
            hung = client.start_workflow("misbehaving_activity", "hangs").result(timeout=30)
            # The same worker process still serves, with the hung thread still blocked.
            assert client.start_workflow("healthy", "still here").result(timeout=30) \
                == "still here"
        assert worker.popen.poll() is None
    finally:
        worker.stop()
        engine.stop()
    assert raised == {"type": "RuntimeError", "timeout_type": None}
    assert hung == {"type": "TimeoutError", "timeout_type": "start_to_close"}


@pytest.mark.parametrize("name", ["exits_its_thread", "interrupts"])
def test_an_activity_that_kills_its_thread_leaves_the_worker_serving(
        stack: Stack, logs: Path, name: str) -> None:
    engine = stack.engine(log=logs / "engine.log")
    worker = stack.worker(MODULE, engine=engine, log=logs / "worker.log")
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            outcome = client.start_workflow("misbehaving_activity", name).result(timeout=15)
            assert client.start_workflow("healthy", "still here").result(timeout=15) \
                == "still here"
        assert worker.popen.poll() is None
    finally:
        worker.stop()
        engine.stop()
    assert outcome["type"] == {"exits_its_thread": "SystemExit",
                               "interrupts": "KeyboardInterrupt"}[name]
