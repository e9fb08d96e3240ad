"""Signal handlers and ``wait_condition`` on a real engine and worker process: signals sent
before a handler is set reach it in order, with the ones sent after; a condition's timeout is
a durable timer."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sdk

from .harness import Engine, Proc, Stack, wait_for

QUEUE = "signal-handlers"
MODULE = "tests.e2e.handlers_workflows"


@pytest.fixture(scope="module")
def handlers_worker(stack: Stack, engine: Engine, logs: Path) -> Iterator[Proc]:
    w = stack.worker(MODULE, task_queue=QUEUE, engine=engine, log=logs / "handlers.log")
    yield w
    w.stop()


@pytest.fixture
def client(stack: Stack, engine: Engine, handlers_worker: Proc) -> Iterator[sdk.Client]:
    with sdk.Client(engine.url, token=stack.token) as c:
        yield c


def types(history: list[dict[str, Any]]) -> list[str]:
    return [e["event_type"] for e in history]


def test_signals_sent_before_and_after_the_handler_is_set_arrive_in_order(
        client: sdk.Client) -> None:
    handle = client.start_workflow("collector", 4, task_queue=QUEUE)
    handle.signal("add", 1)  # the handlers are set only after "start": these wait
    handle.signal("note", "early")
    handle.signal("add", 2)
    handle.signal("start", "go")

    def handlers_set() -> bool:
        # The note's activity is scheduled by the dynamic handler: the handlers are set.
        return "ActivityTaskScheduled" in types(handle.history())

    wait_for(handlers_set, timeout=60)
    handle.signal("add", 3)
    handle.signal("add", 4)
    assert handle.result(timeout=60) == {"start": "go", "items": [1, 2, 3, 4],
                                         "shouted": ["NOTE EARLY"]}
    history = handle.history()
    signals = [(e["event_id"], e["attributes"]["signal_name"], e["attributes"]["input"])
               for e in history if e["event_type"] == "WorkflowExecutionSignaled"]
    assert [(name, value) for _, name, value in signals] == [
        ("add", 1), ("note", "early"), ("add", 2), ("start", "go"), ("add", 3), ("add", 4)]
    scheduled = next(e["event_id"] for e in history
                     if e["event_type"] == "ActivityTaskScheduled")
    assert signals[3][0] < scheduled < signals[4][0]  # 3 and 4 came after the handler was set


def test_wait_condition_times_out_on_a_durable_timer(client: sdk.Client) -> None:
    handle = client.start_workflow("deadline", 0.5, task_queue=QUEUE)
    assert handle.result(timeout=60) == "timed out"
    assert {"TimerStarted", "TimerFired"} <= set(types(handle.history()))


def test_a_condition_met_before_its_timeout_cancels_the_timer(client: sdk.Client) -> None:
    handle = client.start_workflow("deadline", 600, task_queue=QUEUE)
    wait_for(lambda: "TimerStarted" in types(handle.history()), timeout=60)
    handle.signal("done")
    assert handle.result(timeout=60) == "done"
    history = types(handle.history())
    assert "TimerCanceled" in history and "TimerFired" not in history
