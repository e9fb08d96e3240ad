"""Start options against a real engine and worker processes: a signal-with-start's workflow
has its signal in its first workflow task, ``use_existing`` answers with the open run, and
the example of docs/sdk.md's "Start options" section runs as written.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

import sdk

from .harness import ROOT, Engine, Proc, Stack

MODULE = "tests.e2e.start_options_workflows"
QUEUE = "start-options"
DOC_QUEUE = "shop"


@pytest.fixture(scope="module")
def options_worker(stack: Stack, engine: Engine, logs: Path) -> Iterator[Proc]:
    w = stack.worker(MODULE, task_queue=QUEUE, engine=engine,
                     log=logs / "start-options-worker.log")
    yield w
    w.stop()


@pytest.fixture
def sclient(stack: Stack, engine: Engine, options_worker: Proc) -> Iterator[sdk.Client]:
    with sdk.Client(engine.url, token=stack.token) as c:
        yield c


def event_types(handle: sdk.WorkflowHandle) -> list[str]:
    return [e["event_type"] for e in handle.history()]


def test_a_signal_with_start_workflow_has_its_signal_in_its_first_task(
        sclient: sdk.Client) -> None:
    handle = sclient.start_workflow("sws_greet", "Ada", workflow_id=f"greet-{uuid.uuid4()}",
                                    task_queue=QUEUE, start_signal="greeting",
                                    start_signal_input="Hello")
    assert handle.started is True
    assert handle.result(timeout=60) == "Hello, Ada"
    # One workflow task did it all: the signal was there when the run's first task ran.
    assert event_types(handle) == [
        "WorkflowExecutionStarted", "WorkflowExecutionSignaled", "WorkflowTaskScheduled",
        "WorkflowTaskStarted", "WorkflowTaskCompleted", "WorkflowExecutionCompleted"]


def test_use_existing_and_signal_with_start_reach_the_open_run(sclient: sdk.Client) -> None:
    workflow_id = f"collect-{uuid.uuid4()}"
    first = sclient.start_workflow("sws_collect", workflow_id=workflow_id, task_queue=QUEUE)
    assert first.started is True
    same = sclient.start_workflow("sws_collect", workflow_id=workflow_id, task_queue=QUEUE,
                                  id_conflict_policy="use_existing")
    assert (same.run_id, same.started) == (first.run_id, False)
    with pytest.raises(sdk.WorkflowAlreadyStartedError) as refused:
        sclient.start_workflow("sws_collect", workflow_id=workflow_id, task_queue=QUEUE)
    assert refused.value.run_id == first.run_id
    with pytest.raises(sdk.SchedAPIError) as mismatch:
        sclient.start_workflow("sws_greet", workflow_id=workflow_id, task_queue=QUEUE,
                               id_conflict_policy="use_existing")
    assert (mismatch.value.status_code, mismatch.value.code) == (409,
                                                                 "workflow_type_mismatch")
    for n in (1, 2):
        signalled = sclient.start_workflow("sws_collect", workflow_id=workflow_id,
                                           task_queue=QUEUE, start_signal="add",
                                           start_signal_input=n)
        assert (signalled.run_id, signalled.started) == (first.run_id, False)
    first.signal("done")
    assert first.result(timeout=60) == [1, 2]
    # Once it has closed, a use_existing starts a new run.
    fresh = sclient.start_workflow("sws_collect", workflow_id=workflow_id, task_queue=QUEUE,
                                   id_conflict_policy="use_existing", start_signal="done")
    assert fresh.started is True and fresh.run_id != first.run_id
    assert fresh.result(timeout=60) == []


def test_the_rest_answers_say_started_with_201_and_200(stack: Stack, engine: Engine) -> None:
    body = {"workflow_type": "sws_collect", "workflow_id": f"rest-{uuid.uuid4()}",
            "task_queue": "nobody-serves-this", "start_signal": "add",
            "start_signal_input": 1}
    auth = {"Authorization": f"Bearer {stack.token}"}
    first = httpx.post(engine.url + "/api/workflows", json=body, headers=auth, timeout=30)
    again = httpx.post(engine.url + "/api/workflows", json=body, headers=auth, timeout=30)
    assert (first.status_code, first.json()["started"]) == (201, True), first.text
    assert (again.status_code, again.json()["started"]) == (200, False), again.text
    assert again.json()["run_id"] == first.json()["run_id"]
    assert again.headers["location"] == first.headers["location"]


# ---- the example of docs/sdk.md ------------------------------------------------------------


def doc_blocks() -> list[str]:
    doc = (ROOT / "docs" / "sdk.md").read_text(encoding="utf-8")
    section = doc.split("\n## Start options: use_existing and signal-with-start\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, flags=re.DOTALL)
    assert len(blocks) == 2, "the section's example: the workflow, then the client"
    return blocks


def test_the_documented_example_runs(stack: Stack, engine: Engine, logs: Path,
                                     tmp_path: Path) -> None:
    workflow_block, client_block = doc_blocks()
    (tmp_path / "docs_start_options.py").write_text(workflow_block)
    path = os.pathsep.join([str(tmp_path), stack.env.get("PYTHONPATH", str(ROOT))])
    worker = stack.worker("docs_start_options", task_queue=DOC_QUEUE, engine=engine,
                          extra_env={"PYTHONPATH": path}, log=logs / "docs-start-worker.log")
    try:
        workflow_id = f"basket-{uuid.uuid4().hex[:8]}"
        namespace: dict[str, Any] = {"__name__": "docs_start_options_client"}
        exec(compile(workflow_block, "docs/sdk.md", "exec"), namespace)
        with sdk.Client(engine.url, token=stack.token) as client:
            namespace["client"] = client
            exec(compile(client_block.replace("basket-ada", workflow_id), "docs/sdk.md",
                         "exec"), namespace)
    finally:
        worker.stop()
    assert namespace["first"].started is True
    assert namespace["again"].started is False
    assert namespace["again"].run_id == namespace["first"].run_id
    assert namespace["same"].run_id == namespace["first"].run_id
    assert namespace["mismatch"] == "task_queue_mismatch"
    assert namespace["result"] == {"owner": "ada", "items": ["tea", "cake"]}
