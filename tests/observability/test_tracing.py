"""Trace propagation, with an in-memory exporter: from the caller's ``traceparent`` through the
engine's HTTP span into the worker's spans of the run's workflow tasks and activities."""

from __future__ import annotations

import asyncio
import inspect
from datetime import UTC, datetime
from typing import Any

import pytest
from django.conf import settings
from django.test import Client
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode
from rest_framework.test import APIClient

import sdk
from dispatch.metrics import DatabaseCollector
from dispatch.models import Leadership
from schedproject import tracing
from sdk._worker import Worker
from sdk.protocol import ActivityTask, WorkflowTask
from workflows.models import Execution
from workflows.services import workflow_start

from ..services.conftest import QUEUE, WORKFLOW, register, tick

TRACE_ID = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
TRACEPARENT = f"00-{TRACE_ID}-{CALLER_SPAN}-01"
NOW = datetime(2026, 1, 1, tzinfo=UTC).isoformat()


@sdk.activity
def shout(ctx: sdk.ActivityContext, text: str) -> str:
    if text == "fail":
        raise ValueError("cannot shout that")
    return text.upper()


@sdk.workflow
async def greet(ctx: sdk.WorkflowContext, name: str) -> str:
    return f"hello {name}"


def wire(event_id: int, event_type: str, **attributes: Any) -> dict[str, Any]:
    return {"event_id": event_id, "event_type": event_type, "timestamp": NOW,
            "attributes": attributes}


def workflow_task(traceparent: str | None) -> WorkflowTask:
    events = [
        wire(1, "WorkflowExecutionStarted", workflow_type="greet", task_queue="q", input="Ada"),
        wire(2, "WorkflowTaskScheduled", task_queue="q", attempt=1),
        wire(3, "WorkflowTaskStarted", scheduled_event_id=2, attempt=1, worker="w"),
    ]
    return WorkflowTask(token="1.t", workflow_id="wf-1", run_id="run-1", workflow_type="greet",
                        task_queue="q", attempt=1, first_event_id=1, events=events,
                        traceparent=traceparent)


def activity_task(text: str, traceparent: str | None) -> ActivityTask:
    return ActivityTask(token=f"2.{text}", workflow_id="wf-1", run_id="run-1",
                        workflow_type="greet", activity_id="1", activity_type="shout",
                        task_queue="q", attempt=2, scheduled_at=NOW, input=text,
                        traceparent=traceparent)


def new_worker() -> Worker:
    return Worker("http://127.0.0.1:9", token="t", task_queue="q", workflows=[greet],
                  activities=[shout])


def run_workflow_task(msg: WorkflowTask) -> None:
    """Hand a new worker one workflow task and wait until it has run (off the loop)."""

    async def handle() -> None:
        worker = new_worker()
        worker._handle_workflow_task(msg)
        await asyncio.gather(*worker._workflow_runs.values())

    asyncio.run(handle())


def spans(exporter: InMemorySpanExporter, prefix: str) -> list[Any]:
    return [s for s in exporter.get_finished_spans() if s.name.startswith(prefix)]


# ---- off by default --------------------------------------------------------------------------


def test_without_an_endpoint_tracing_is_off_and_django_is_not_instrumented() -> None:
    assert settings.SCHED.otlp_endpoint is None
    assert tracing.setup(None) is False
    assert not tracing.enabled()
    assert tracing.current_traceparent() is None and tracing.current_ids() is None
    assert not any("opentelemetry" in m for m in settings.MIDDLEWARE)


def test_the_otlp_url_gets_the_traces_path_once() -> None:
    assert tracing.traces_url("http://c:4318") == "http://c:4318/v1/traces"
    assert tracing.traces_url("http://c:4318/v1/traces/") == "http://c:4318/v1/traces"


def test_the_ready_gauges_report_nothing_without_a_database() -> None:
    assert list(DatabaseCollector().collect()) == []  # database access not allowed


# ---- the engine ------------------------------------------------------------------------------


@pytest.mark.django_db
def test_an_http_request_span_joins_the_callers_trace(traced: InMemorySpanExporter) -> None:
    assert Client().get("/healthz", HTTP_TRACEPARENT=TRACEPARENT).status_code == 200
    [server] = [s for s in traced.get_finished_spans() if s.kind is SpanKind.SERVER]
    assert f"{server.context.trace_id:032x}" == TRACE_ID
    assert server.parent is not None and f"{server.parent.span_id:016x}" == CALLER_SPAN


# ---- the worker ------------------------------------------------------------------------------


def test_a_workflow_task_span_joins_the_trace_of_its_message(
        traced: InMemorySpanExporter) -> None:
    run_workflow_task(workflow_task(TRACEPARENT))
    [span] = spans(traced, "workflow_task")
    assert span.name == "workflow_task greet"
    assert f"{span.context.trace_id:032x}" == TRACE_ID
    assert span.parent is not None and f"{span.parent.span_id:016x}" == CALLER_SPAN
    assert dict(span.attributes) == {
        "sched.workflow_id": "wf-1", "sched.run_id": "run-1", "sched.workflow_type": "greet",
        "sched.task_queue": "q", "sched.attempt": 1, "sched.sticky": False}
    assert span.status.status_code is StatusCode.UNSET


def test_a_task_without_trace_context_starts_a_new_trace(traced: InMemorySpanExporter) -> None:
    run_workflow_task(workflow_task(None))
    [span] = spans(traced, "workflow_task")
    assert span.parent is None and f"{span.context.trace_id:032x}" != TRACE_ID


def test_activity_spans_carry_the_run_and_activity_and_record_failures(
        traced: InMemorySpanExporter) -> None:
    async def run_two() -> None:
        worker = new_worker()
        worker._setup()
        for text in ("hi", "fail"):
            worker._handle_activity_task(activity_task(text, TRACEPARENT))
        await asyncio.gather(*(r.task for r in list(worker._running.values()) if r.task))
        assert worker._executor is not None
        worker._executor.shutdown()

    asyncio.run(run_two())
    found = sorted(spans(traced, "activity"), key=lambda s: s.status.status_code.value)
    assert [s.name for s in found] == ["activity shout", "activity shout"]
    ok, failed = found
    for span in found:
        assert f"{span.context.trace_id:032x}" == TRACE_ID
        assert span.attributes["sched.workflow_id"] == "wf-1"
        assert span.attributes["sched.run_id"] == "run-1"
        assert span.attributes["sched.activity_type"] == "shout"
        assert span.attributes["sched.attempt"] == 2
    assert ok.status.status_code is StatusCode.UNSET
    assert failed.status.status_code is StatusCode.ERROR
    assert "cannot shout that" in (failed.status.description or "")


# ---- the whole way: start request -> run -> task message -> worker -----------------------------

WIRED = "trace_context" in inspect.signature(workflow_start).parameters


@pytest.mark.skipif(not WIRED, reason="workflow_start does not take trace_context yet")
@pytest.mark.django_db
def test_a_workflows_spans_join_the_trace_of_the_request_that_started_it(
        traced: InMemorySpanExporter, api_client: APIClient) -> None:
    Leadership.objects.create(name="dispatcher", term=1, holder="test")
    response = api_client.post("/api/workflows", {"workflow_type": WORKFLOW, "input": "Ada",
                                                  "task_queue": QUEUE},
                               format="json", HTTP_TRACEPARENT=TRACEPARENT)
    assert response.status_code == 201
    run = Execution.objects.get(workflow_id=response.json()["workflow_id"])
    assert run.search_attributes["traceparent"].split("-")[1] == TRACE_ID
    register("w1")
    messages = [m for _, m in tick() if m["type"] == "workflow_task"]
    assert messages and messages[0]["traceparent"] == run.search_attributes["traceparent"]
    fields = {k: v for k, v in messages[0].items() if k != "type"}
    traced.clear()
    run_workflow_task(WorkflowTask(**{**fields, "workflow_type": "greet"}))
    [span] = spans(traced, "workflow_task")
    assert f"{span.context.trace_id:032x}" == TRACE_ID
