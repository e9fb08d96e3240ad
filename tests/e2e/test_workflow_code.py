"""Workflow code that goes wrong, on a real engine and real worker processes: a bug fails the
workflow task (retried until fixed code is deployed), code that blocks is a deadlock that
fails its task while the worker serves other workflows, an ``ApplicationError`` fails the run.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sdk

from .harness import Engine, Proc, Stack, wait_for

QUEUE = "workflow-code"
V1 = "tests.e2e.workflow_code_v1"
V2 = "tests.e2e.workflow_code_v2"


@pytest.fixture
def client(stack: Stack, engine: Engine) -> Iterator[sdk.Client]:
    with sdk.Client(engine.url, token=stack.token) as c:
        yield c


def start_worker(stack: Stack, engine: Engine, module: str, log: Path) -> Proc:
    return stack.worker(module, task_queue=QUEUE, engine=engine, log=log)


def task_failures(handle: sdk.WorkflowHandle) -> list[dict[str, Any]]:
    return [e["attributes"] for e in handle.history() if e["event_type"] == "WorkflowTaskFailed"]


def test_a_bug_fails_the_workflow_task_until_fixed_code_is_deployed(
        stack: Stack, engine: Engine, client: sdk.Client, logs: Path) -> None:
    buggy = start_worker(stack, engine, V1, logs / "workflow-code-v1.log")
    fixed = None
    try:
        handle = client.start_workflow("invoice", {"qty": 2}, task_queue=QUEUE)
        # The task fails and is retried (with back-off); the run stays open.
        described = wait_for(lambda: (d := handle.describe())["last_task_failure"]
                             and d["last_task_failure"]["attempt"] >= 2 and d, timeout=60)
        assert described["status"] == "running"
        failure = described["last_task_failure"]
        assert failure["cause"] == "workflow_error"
        assert failure["type"] == "KeyError" and "tax" in failure["message"]
        assert "workflow_code_v1.py" in failure["stack"]
        assert {f["cause"] for f in task_failures(handle)} == {"workflow_error"}
        # The run is not failed: refusing on purpose (ApplicationError) is what fails one.
        with pytest.raises(sdk.WorkflowFailureError) as info:
            client.start_workflow("refuses", task_queue=QUEUE).result(timeout=30)
        assert info.value.status == "failed" and info.value.failure is not None
        assert info.value.failure["type"] == "Refused"
        buggy.stop()
        log = (logs / "workflow-code-v1.log").read_text()
        assert f"WARNING sched.worker: workflow task of invoice '{handle.workflow_id}'" in log
        assert "workflow_error: KeyError" in log
        # The deploy: the next retry runs the fixed code and the run completes.
        fixed = start_worker(stack, engine, V2, logs / "workflow-code-v2.log")
        assert handle.result(timeout=60) == {"total": 6, "tax": 0}
        assert handle.describe()["last_task_failure"] is None
    finally:
        buggy.stop()
        if fixed is not None:
            fixed.stop()


def test_a_deadlock_fails_its_task_while_the_worker_serves_other_workflows(
        stack: Stack, engine: Engine, client: sdk.Client, logs: Path) -> None:
    worker = start_worker(stack, engine, V1, logs / "workflow-code-deadlock.log")
    blocked = None
    try:
        blocked = client.start_workflow("blocking", 12, task_queue=QUEUE)
        wait_for(lambda: any(e["event_type"] == "WorkflowTaskStarted"
                             for e in blocked.history()), timeout=30)
        began = time.monotonic()
        other = client.start_workflow("quick", "served", task_queue=QUEUE)
        assert other.result(timeout=30) == "served"
        # Served while the first run's thread was still asleep (12 s), not after it.
        assert time.monotonic() - began < 12
        assert "TimerStarted" in [e["event_type"] for e in other.history()]  # asyncio.sleep
        failed = wait_for(lambda: task_failures(blocked), timeout=30)[0]
        assert failed["cause"] == "deadlock_detected"
        assert failed["failure"]["type"] == "DeadlockError"
        message = failed["failure"]["message"]
        assert "'blocking'" in message and "did not yield for 2 s" in message
        assert "workflow_code_v1.py:" in message and "in blocking" in message
        described = blocked.describe()
        assert described["status"] == "running"
        assert described["last_task_failure"]["cause"] == "deadlock_detected"
    finally:
        if blocked is not None:
            blocked.terminate("test over")
        worker.stop()
    log = (logs / "workflow-code-deadlock.log").read_text()
    assert "deadlock_detected" in log and "WARNING" in log
