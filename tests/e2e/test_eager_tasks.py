"""Eager workflow tasks on a real engine and worker: the workflow task after an activity runs
in the worker on the activity's result and is recorded with the activity's completion, in a
history that replays like any other, news (a signal) during an activity included. (The
engine's refusals are the service tests' and the SDK's fallback the worker unit tests': a
real engine cannot be made to refuse at a chosen moment.)"""

from __future__ import annotations

import time
import uuid
from datetime import datetime
from typing import Any

import sdk
from sdk.testing import Replayer

from .e2e_workflows import eager_signal, eager_steps


def _groups(history: list[dict[str, Any]]) -> list[list[str]]:
    """The event types of the history, grouped by timestamp (one transition each)."""
    out: list[list[str]] = []
    stamp = None
    for event in history:
        if event["timestamp"] != stamp:
            out.append([])
            stamp = event["timestamp"]
        out[-1].append(event["event_type"])
    return out


EAGER = ["ActivityTaskStarted", "ActivityTaskCompleted", "WorkflowTaskScheduled",
         "WorkflowTaskStarted", "WorkflowTaskCompleted"]


def test_the_tasks_after_activities_run_eagerly_and_replay(client: sdk.Client) -> None:
    handle = client.start_workflow(eager_steps, 3, workflow_id=f"eager-{uuid.uuid4().hex}")
    times = handle.result(timeout=60)
    history = handle.history()
    groups = _groups(history)
    eager = [g for g in groups if g[:5] == EAGER]
    assert len(eager) == 3, groups  # every task after an activity
    assert eager[-1][5:] == ["WorkflowExecutionCompleted"]
    # The workflow's time in each task is that task's WorkflowTaskStarted, as always.
    started = [e["timestamp"] for e in history if e["event_type"] == "WorkflowTaskStarted"]
    assert [datetime.fromisoformat(t) for t in times] == [
        datetime.fromisoformat(t) for t in started]
    assert times == sorted(times)
    Replayer([eager_steps]).replay({"events": history})  # no NonDeterminismError


def test_a_signal_during_an_activity_is_seen_and_the_history_replays(client: sdk.Client) -> None:
    handle = client.start_workflow(eager_signal, workflow_id=f"eager-{uuid.uuid4().hex}")
    deadline = time.monotonic() + 30
    while not any(e["event_type"] == "ActivityTaskScheduled" for e in handle.history()):
        assert time.monotonic() < deadline, "the activity was never scheduled"
        time.sleep(0.05)
    handle.signal("note", "hi")  # while the first (one second) activity runs
    assert handle.result(timeout=60) == {"got": ["hi"], "first": "done", "second": 3}
    history = handle.history()
    types = [e["event_type"] for e in history]
    signaled = types.index("WorkflowExecutionSignaled")
    assert signaled < types.index("ActivityTaskCompleted")
    Replayer([eager_signal]).replay({"events": history})
