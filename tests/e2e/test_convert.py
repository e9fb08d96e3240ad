"""Data conversion on a real engine and workers: dataclasses in and out, a payload codec on
the worker and the client (the database holds only encoded payloads), failure chains."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import sdk
from sdk.protocol.payloads import CODEC_KEY

from .convert_workflows import SECRET, Line, Order, Quote, XorCodec, quote_order
from .harness import Engine, Proc, Stack, wait_for

MODULE = "tests.e2e.convert_workflows"
PLAIN_QUEUE = "convert-plain"
CODEC_QUEUE = "convert-codec"


@pytest.fixture(scope="module")
def plain_worker(stack: Stack, engine: Engine, logs: Path) -> Iterator[Proc]:
    w = stack.worker(MODULE, task_queue=PLAIN_QUEUE, engine=engine,
                     log=logs / "convert-plain.log")
    yield w
    w.stop()


@pytest.fixture(scope="module")
def codec_worker(stack: Stack, engine: Engine, logs: Path) -> Iterator[Proc]:
    w = stack.worker(MODULE, task_queue=CODEC_QUEUE, engine=engine,
                     log=logs / "convert-codec.log",
                     extra_env={"SCHED_PAYLOAD_CODEC": f"{MODULE}:XorCodec"})
    yield w
    w.stop()


@pytest.fixture
def plain_client(stack: Stack, engine: Engine, plain_worker: Proc) -> Iterator[sdk.Client]:
    with sdk.Client(engine.url, token=stack.token) as c:
        yield c


@pytest.fixture
def codec_client(stack: Stack, engine: Engine, codec_worker: Proc) -> Iterator[sdk.Client]:
    with sdk.Client(engine.url, token=stack.token, payload_codec=XorCodec()) as c:
        yield c


ORDER = Order(7, SECRET, [Line("apple", 2), Line("pear", 4)])
QUOTE = Quote(7, 15.0, SECRET, [Line("apple", 2), Line("pear", 4)])

STORED = """
import json
from dispatch.models import Task
from workflows.models import Execution, HistoryEvent
ids = {ids!r}
runs = Execution.objects.filter(workflow_id__in=ids)
print(json.dumps({{
    "events": [[e.event_type, e.attributes] for e in
               HistoryEvent.objects.filter(execution__in=runs).order_by("execution", "event_id")],
    "runs": [[r.input, r.result, r.failure, r.state, r.last_task_failure] for r in runs],
    "tasks": [[t.input, t.heartbeat_details, t.last_failure, t.kind, t.token] for t in
              Task.objects.filter(execution__in=runs)],
}}))
"""


def stored(stack: Stack, *workflow_ids: str) -> dict[str, Any]:
    """What the database holds for these workflows: their events, run rows and task rows."""
    out = stack.manage("shell", "-c", STORED.format(ids=list(workflow_ids))).stdout
    result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
    return result


def test_a_dataclass_goes_in_and_out_of_a_workflow_and_an_activity(
        plain_client: sdk.Client) -> None:
    handle = plain_client.start_workflow(quote_order, ORDER, task_queue=PLAIN_QUEUE,
                                         workflow_id=f"quote-{uuid.uuid4().hex}")
    assert handle.result(timeout=60) == QUOTE  # rebuilt from quote_order's annotation
    # Without a hint the client gets the JSON the engine holds; with one, the dataclass.
    again = plain_client.get_workflow_handle(handle.workflow_id)
    assert again.result(timeout=60) == {"order_id": 7, "total": 15.0, "note": SECRET,
                                        "lines": [{"sku": "apple", "quantity": 2},
                                                  {"sku": "pear", "quantity": 4}]}
    assert again.result(timeout=60, result_type=Quote) == QUOTE
    scheduled = [e["attributes"] for e in handle.history()
                 if e["event_type"] == "ActivityTaskScheduled"]
    assert scheduled[0]["input"]["lines"][1] == {"sku": "pear", "quantity": 4}


def test_with_a_codec_the_database_holds_only_encoded_payloads(
        stack: Stack, engine: Engine, codec_client: sdk.Client) -> None:
    quote = codec_client.start_workflow(quote_order, ORDER, task_queue=CODEC_QUEUE,
                                        workflow_id=f"quote-codec-{uuid.uuid4().hex}")
    assert quote.result(timeout=60) == QUOTE
    handle = codec_client.start_workflow("every_payload", SECRET, task_queue=CODEC_QUEUE,
                                         workflow_id=f"codec-{uuid.uuid4().hex}")
    # The signal waits for the first steps, so its input is the last plain text sent.
    wait_for(lambda: any(e["event_type"] == "MarkerRecorded" and
                         e["attributes"]["marker_name"] == "side_effect"
                         for e in handle.history()), timeout=60)
    handle.signal("go", f"signal {SECRET}")
    assert handle.result(timeout=60) == {
        "progress": SECRET, "local": SECRET.upper(), "effect": f"effect {SECRET}",
        "signal": f"signal {SECRET}", "refused": f"ChargeRefused {SECRET}"}

    held = stored(stack, quote.workflow_id, handle.workflow_id)
    text = json.dumps(held)
    assert SECRET not in text and SECRET.upper() not in text
    types = [t for t, _ in held["events"]]
    for needed in ("WorkflowExecutionStarted", "ActivityTaskCompleted", "ActivityTaskFailed",
                   "MarkerRecorded", "WorkflowExecutionSignaled", "WorkflowExecutionCompleted"):
        assert needed in types
    encoded = text.count(CODEC_KEY)
    assert encoded >= 12, held  # every input, result, detail and marker of both runs
    # The readable parts of a failure stay readable: the engine and dashboard show them.
    [failed] = [a for t, a in held["events"] if t == "ActivityTaskFailed"]
    assert failed["failure"]["type"] == "ChargeRefused"
    assert set(failed["failure"]["details"]) == {CODEC_KEY}
    assert failed["failure"]["cause"]["type"] == "ValueError"

    # A client without the codec sees the encoded payloads, as the engine does.
    with sdk.Client(engine.url, token=stack.token) as plain:
        raw = plain.get_workflow_handle(handle.workflow_id).result(timeout=10)
    assert set(raw) == {CODEC_KEY}


def test_the_client_sees_the_whole_failure_chain(codec_client: sdk.Client) -> None:
    handle = codec_client.start_workflow("refused_charge", SECRET, task_queue=CODEC_QUEUE,
                                         workflow_id=f"refused-{uuid.uuid4().hex}")
    with pytest.raises(sdk.WorkflowFailureError) as caught:
        handle.result(timeout=60)
    err = caught.value
    assert err.status == "failed"
    activity_error = err.cause
    assert isinstance(activity_error, sdk.ActivityError)
    assert activity_error.activity_type == "refuse" and activity_error.attempt == 1
    application_error = activity_error.cause
    assert isinstance(application_error, sdk.ApplicationError)
    assert application_error.type == "ChargeRefused"
    assert application_error.details == {"why": SECRET}  # decoded by the client's codec
    assert application_error.non_retryable
    root = application_error.cause
    assert isinstance(root, sdk.ApplicationError)
    assert root.type == "ValueError" and root.message == "bad input"


def test_heartbeats_and_async_completions_are_encoded_too(
        stack: Stack, codec_client: sdk.Client) -> None:
    handle = codec_client.start_workflow("parked", SECRET, task_queue=CODEC_QUEUE,
                                         workflow_id=f"parked-{uuid.uuid4().hex}")

    def parked_activity() -> list[Any] | None:
        tasks = stored(stack, handle.workflow_id)["tasks"]
        beating = [t for t in tasks if t[3] == "activity" and t[1] is not None]
        return beating[0] if beating else None

    _input, details, _failure, _kind, token = wait_for(parked_activity, timeout=60)
    assert set(details) == {CODEC_KEY}
    activity = codec_client.get_async_activity_handle(token)
    assert activity.heartbeat({"progress": f"more {SECRET}"}) is False
    assert SECRET not in json.dumps(stored(stack, handle.workflow_id))
    activity.complete(QUOTE)
    assert handle.result(timeout=60, result_type=Quote) == QUOTE
    assert SECRET not in json.dumps(stored(stack, handle.workflow_id))
