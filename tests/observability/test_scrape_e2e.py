"""A real engine (leader), a standby and a worker as processes: scrape their ``/metrics``."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

import sdk

from ..e2e.harness import Engine, Stack, running_stack, wait_for

pytestmark = pytest.mark.e2e
MODULE = "tests.e2e.e2e_workflows"


def scrape(engine: Engine) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(engine.url + "/metrics", timeout=10).text
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def sample(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str,
           **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    with running_stack(tmp_path_factory.mktemp("scrape")) as s:
        yield s


def test_metrics_of_a_real_engine_after_a_workload(stack: Stack, tmp_path: Path) -> None:
    leader = stack.engine(log=tmp_path / "leader.log", extra_env={"SCHED_LOG_FORMAT": "json"})
    wait_for(lambda: sample(scrape(leader), "sched_leader", loop="dispatcher") == 1, timeout=15)
    standby = stack.engine(log=tmp_path / "standby.log")
    worker = stack.worker(MODULE, engine=leader, log=tmp_path / "worker.log")
    with sdk.Client(leader.url, token=stack.token) as client:
        # One activity failure, retried after a 0.1 s back-off (a timer), then success.
        assert client.start_workflow("retries", 1).result(timeout=30) == {"attempt": 2}
        assert client.start_workflow("fan_out", 3).result(timeout=30) == 6

    got = scrape(leader)
    assert sample(got, "sched_workflows_started_total", workflow_type="retries") == 1
    assert sample(got, "sched_workflows_closed_total", workflow_type="retries",
                  status="completed") == 1
    assert sample(got, "sched_workflows_closed_total", workflow_type="fan_out",
                  status="completed") == 1
    assert sample(got, "sched_activities_closed_total", status="completed") == 4
    assert sample(got, "sched_activity_retries_total", task_queue="default",
                  activity_type="flaky") == 1
    assert sample(got, "sched_schedule_to_start_seconds_count", kind="activity",
                  task_queue="default") == 5
    assert sample(got, "sched_workflow_task_seconds_count", workflow_type="retries") == 2
    assert sample(got, "sched_timer_lateness_seconds_count", kind="activity_retry") == 1
    assert sample(got, "sched_workers_connected", task_queue="default") == 1
    assert sample(got, "sched_leader", loop="dispatcher") == 1
    assert sample(got, "sched_leader", loop="timers") == 1
    assert sample(got, "django_http_responses_total_by_status_total", status="201") >= 2
    assert sample(scrape(standby), "sched_leader", loop="dispatcher") == 0

    worker.stop()
    leader.stop()
    lines = [json.loads(line) for line in (tmp_path / "leader.log").read_text().splitlines()
             if line.startswith("{")]
    assert lines and all("component" in line for line in lines)
    assert any(line["component"] == "engine" for line in lines)
    assert stack.token not in (tmp_path / "leader.log").read_text()


class _Collector(http.server.BaseHTTPRequestHandler):
    """A stand-in OTLP/HTTP collector: keeps the trace ids of the spans posted to it."""

    spans: ClassVar[list[tuple[str, str]]] = []  # (trace id, span name)

    def do_POST(self) -> None:
        from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
            ExportTraceServiceRequest,
        )

        body = self.rfile.read(int(self.headers["Content-Length"]))
        request = ExportTraceServiceRequest.FromString(body)
        for resource in request.resource_spans:
            for scope in resource.scope_spans:
                self.spans.extend((span.trace_id.hex(), span.name) for span in scope.spans)
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


def test_an_engine_with_an_otlp_endpoint_exports_the_callers_trace(
        stack: Stack, tmp_path: Path) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        engine = stack.engine(log=tmp_path / "engine.log", extra_env={
            "SCHED_OTLP_ENDPOINT": f"http://127.0.0.1:{server.server_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "100", "SCHED_RUN_LOOPS": "false"})
        trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
        response = httpx.get(engine.url + "/healthz",
                             headers={"traceparent": f"00-{trace_id}-00f067aa0ba902b7-01"})
        assert response.status_code == 200
        wait_for(lambda: any(t == trace_id for t, _ in _Collector.spans), timeout=15)
        engine.stop()
    finally:
        server.shutdown()
