"""Every durable primitive, run by a real engine process and real worker processes."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

import sdk

from .conftest import MODULE
from .harness import Engine, Stack, running_stack, wait_for


def run(client: sdk.Client, workflow: str, input: object = None, timeout: float = 60) -> object:
    return client.start_workflow(workflow, input, workflow_id=f"{workflow}-{uuid.uuid4().hex}"
                                 ).result(timeout=timeout)


def event_types(handle: sdk.WorkflowHandle) -> list[str]:
    return [e["event_type"] for e in handle.history()]


def test_retries_then_success(client: sdk.Client) -> None:
    handle = client.start_workflow("retries", 2)
    assert handle.result(timeout=30) == {"attempt": 3}
    types = event_types(handle)
    # Retries live in the task row: history holds one scheduled and one completed activity.
    assert types.count("ActivityTaskScheduled") == 1
    assert types.count("ActivityTaskCompleted") == 1
    assert types[-1] == "WorkflowExecutionCompleted"


def test_non_retryable_error_is_not_retried(client: sdk.Client) -> None:
    result = run(client, "non_retryable")
    assert result == {"type": "CardDeclined", "message": "card declined", "attempt": 1}


def test_heartbeat_timeout_then_retry_gets_last_details(client: sdk.Client) -> None:
    assert run(client, "heartbeat_retry") == {"resumed_from": {"step": 1}, "attempt": 2}


def test_start_to_close_timeout(client: sdk.Client) -> None:
    assert run(client, "start_to_close") == {"type": "TimeoutError",
                                             "timeout_type": "start_to_close"}


def test_fan_out_of_50_parallel_activities(client: sdk.Client) -> None:
    handle = client.start_workflow("fan_out", 50)
    assert handle.result(timeout=60) == sum(i * 2 for i in range(50))
    assert event_types(handle).count("ActivityTaskCompleted") == 50


def test_signal_sent_before_the_wait(client: sdk.Client) -> None:
    handle = client.start_workflow("signal_wait", {"sleep": 1.0, "name": "go"})
    handle.signal("other", "ignored")
    handle.signal("go", 42)
    assert handle.result(timeout=30) == {"name": "go", "input": 42}


def test_signal_sent_during_a_sleep_is_kept(client: sdk.Client) -> None:
    handle = client.start_workflow("signal_wait", {"sleep": 1.5})
    wait_for(lambda: "TimerStarted" in event_types(handle), timeout=15)
    handle.signal("during-sleep", {"x": 1})
    assert handle.result(timeout=30) == {"name": "during-sleep", "input": {"x": 1}}


def test_wait_for_signal_times_out(client: sdk.Client) -> None:
    started = time.monotonic()
    assert run(client, "signal_wait", {"timeout": 0.7}) == {"timed_out": True}
    assert time.monotonic() - started >= 0.7


def test_workflow_error_fails_the_run(client: sdk.Client) -> None:
    handle = client.start_workflow("boom")
    with pytest.raises(sdk.WorkflowFailureError) as info:
        handle.result(timeout=30)
    assert info.value.status == "failed"
    failure = info.value.failure
    assert failure is not None
    assert failure["type"] == "ValueError"
    assert "workflow code raised" in failure["message"]
    assert "boom" in failure["stack"]  # the workflow function's frame


def test_cancel_and_terminate(client: sdk.Client) -> None:
    handle = client.start_workflow("signal_wait", {"name": "never"})
    wait_for(lambda: "WorkflowTaskCompleted" in event_types(handle), timeout=15)
    handle.cancel("changed my mind")
    with pytest.raises(sdk.WorkflowFailureError) as info:
        handle.result(timeout=30)
    assert info.value.status == "canceled"
    other = client.start_workflow("signal_wait", {"name": "never"})
    other.terminate("stop")
    with pytest.raises(sdk.WorkflowFailureError) as info:
        other.result(timeout=30)
    assert info.value.status == "terminated"


def test_long_history_completes(client: sdk.Client) -> None:
    assert run(client, "many_steps", 200, timeout=120) == sum(i * 2 for i in range(200))


def test_task_queue_routing(stack: Stack, engine: Engine, client: sdk.Client,
                            logs: Path) -> None:
    payments = stack.worker(MODULE, task_queue="payments", engine=engine,
                            log=logs / "payments.log",
                            extra_env={"E2E_WORKER_NAME": "payments-worker"})
    try:
        result = run(client, "routed", "payments")
        assert result == {"workflow_queue_ran_on": "default-worker",
                          "other_queue_ran_on": "payments-worker"}
        on_payments = client.start_workflow("routed", "default", task_queue="payments")
        assert on_payments.result(timeout=30) == {"workflow_queue_ran_on": "payments-worker",
                                                  "other_queue_ran_on": "default-worker"}
    finally:
        payments.stop()


def test_non_determinism_then_fixed_code_resumes(stack: Stack, engine: Engine,
                                                 client: sdk.Client, logs: Path) -> None:
    # Only dedicated workers serve this queue, so the variant in charge is known.
    queue = "versioned-" + uuid.uuid4().hex[:6]
    original = stack.worker(MODULE, task_queue=queue, engine=engine,
                            log=logs / "versioned-a.log", extra_env={"E2E_VARIANT": "a"})
    handle = client.start_workflow("versioned", task_queue=queue)
    wait_for(lambda: "ActivityTaskCompleted" in event_types(handle), timeout=20)
    wait_for(lambda: event_types(handle)[-1] == "WorkflowTaskCompleted", timeout=20)
    original.stop()

    changed = stack.worker(MODULE, task_queue=queue, engine=engine,
                           log=logs / "versioned-b.log", extra_env={"E2E_VARIANT": "b"})
    handle.signal("go", "now")
    failed = wait_for(lambda: [e for e in handle.history()
                               if e["event_type"] == "WorkflowTaskFailed"], timeout=20)
    assert failed[0]["attributes"]["cause"] == "nondeterminism"
    assert "step" in failed[0]["attributes"]["failure"]["message"]
    assert handle.describe()["status"] == "running"
    changed.stop()

    restored = stack.worker(MODULE, task_queue=queue, engine=engine,
                            log=logs / "versioned-a2.log", extra_env={"E2E_VARIANT": "a"})
    try:
        assert handle.result(timeout=60) == {"first": "a", "signal": "now"}
    finally:
        restored.stop()


def test_engine_killed_during_a_sleep(tmp_path: Path, logs: Path) -> None:
    # Its own database: on SQLite only one engine may serve a database at a time.
    with running_stack(tmp_path) as stack:
        _engine_killed_during_a_sleep(stack, logs)


def _engine_killed_during_a_sleep(stack: Stack, logs: Path) -> None:
    engine = stack.engine(log=logs / "engine-kill.log")
    worker = stack.worker(MODULE, engine=engine, log=logs / "worker-kill.log")
    try:
        with sdk.Client(engine.url, token=stack.token) as client:
            handle = client.start_workflow("sleeper", 4)
            wait_for(lambda: "TimerStarted" in event_types(handle), timeout=15)
            engine.kill()
            killed = datetime.now(UTC)
            time.sleep(1)
            engine.restart()
            answered = datetime.now(UTC)  # the restarted engine answers /healthz
            result = handle.result(timeout=60)
            history = handle.history()
    finally:
        worker.stop()
        engine.stop()
    types = [e["event_type"] for e in history]
    assert types.count("TimerStarted") == 1 and types.count("TimerFired") == 1
    assert (types.index("TimerStarted") < types.index("TimerFired")
            < types.index("WorkflowExecutionCompleted"))
    timer_started = next(e for e in history if e["event_type"] == "TimerStarted")
    timer_fired = next(e for e in history if e["event_type"] == "TimerFired")
    due = datetime.fromisoformat(timer_started["attributes"]["fire_at"])
    fired = datetime.fromisoformat(timer_fired["timestamp"])
    # Never early, and fired by the restarted engine: the kill lost no wake-up ...
    assert fired >= due, f"fired {(due - fired).total_seconds():.2f}s early"
    assert fired > killed, "fired before the kill"
    # ... and promptly once that engine was up (its first timer tick), however long the
    # machine took to restart it.
    late = (fired - max(due, answered)).total_seconds()
    assert late < 10, f"fired {late:.2f}s after the restarted engine answered and it was due"
    # In the workflow's own clock, the sleep lasted at least what it asked for.
    started = datetime.fromisoformat(result["started"])
    woke = datetime.fromisoformat(result["woke"])
    assert woke - started >= timedelta(seconds=4), f"woke after {woke - started}"
