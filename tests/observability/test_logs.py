"""Structured log lines: each names its component and, where a run is known, its ids."""

from __future__ import annotations

import json
import logging
import sys

import pytest

from schedproject.logs import JsonFormatter, TextFormatter
from sdk._worker import Worker
from sdk.protocol import ActivityTask

from .test_tracing import NOW, TRACE_ID, TRACEPARENT, greet, shout


def record(name: str, message: str, *args: object, exc: bool = False,
           **extra: object) -> logging.LogRecord:
    exc_info = None
    if exc:
        try:
            raise RuntimeError("Authorization: Bearer sekrit-token")
        except RuntimeError:
            exc_info = sys.exc_info()
    rec = logging.LogRecord(name, logging.WARNING, __file__, 1, message, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def test_json_lines_carry_the_component_and_the_run() -> None:
    line = json.loads(JsonFormatter().format(record(
        "sched.worker", "rejected %s", "x", workflow_id="wf-1", run_id="run-1")))
    assert {k: line[k] for k in ("level", "logger", "message", "component", "workflow_id",
                                 "run_id")} == {
        "level": "warning", "logger": "sched.worker", "message": "rejected x",
        "component": "worker", "workflow_id": "wf-1", "run_id": "run-1"}
    assert "trace_id" not in line  # tracing is off


def test_text_lines_carry_them_too() -> None:
    line = TextFormatter().format(record("sched.worker_socket", "failed", worker_id="w9",
                                         workflow_id="wf-1", run_id="run-1"))
    assert line.endswith(
        " WARNING [worker_socket] failed workflow_id=wf-1 run_id=run-1 worker_id=w9")


def test_other_loggers_keep_their_name_and_an_explicit_component_wins() -> None:
    assert json.loads(JsonFormatter().format(record("django.request", "x")))["component"] == (
        "django.request")
    assert json.loads(JsonFormatter().format(
        record("sched.engine", "x", component="dispatcher")))["component"] == "dispatcher"


def test_tokens_never_reach_a_line() -> None:
    for formatter in (JsonFormatter(), TextFormatter()):
        line = formatter.format(record("sched.api", "header was %s", "Bearer abc.DEF-123",
                                       exc=True))
        assert "abc.DEF-123" not in line and "sekrit-token" not in line
        assert "[redacted]" in line


def test_lines_inside_a_span_carry_its_trace(traced: object) -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    parent = SpanContext(int(TRACE_ID, 16), 0x1234, is_remote=True,
                         trace_flags=TraceFlags(TraceFlags.SAMPLED))
    with trace.use_span(NonRecordingSpan(parent)):
        line = json.loads(JsonFormatter().format(record("sched.api", "inside")))
    assert line["trace_id"] == TRACE_ID and line["span_id"] == f"{0x1234:016x}"


def test_the_workers_log_lines_about_a_run_carry_its_ids(
        caplog: pytest.LogCaptureFixture) -> None:
    import asyncio

    async def twice() -> None:
        worker = Worker("http://127.0.0.1:9", token="t", workflows=[greet], activities=[shout])
        worker._setup()
        task = ActivityTask(token="3.x", workflow_id="wf-7", run_id="run-7",
                            workflow_type="greet", activity_id="1", activity_type="shout",
                            task_queue="q", attempt=1, scheduled_at=NOW, input="a",
                            traceparent=TRACEPARENT)
        worker._handle_activity_task(task)
        worker._handle_activity_task(task)  # a duplicate: logged and ignored
        await asyncio.gather(*(r.task for r in list(worker._running.values()) if r.task))
        assert worker._executor is not None
        worker._executor.shutdown()

    with caplog.at_level(logging.WARNING, logger="sched.worker"):
        asyncio.run(twice())
    [rec] = [r for r in caplog.records if "duplicate" in r.getMessage()]
    assert (rec.__dict__["workflow_id"], rec.__dict__["run_id"]) == ("wf-7", "run-7")
