"""GET /api/workflows/{id}/result: answers when the run closes or the wait ends."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from tests.api.conftest import Engine
from workflows import changes


def start(client: APIClient, workflow_id: str = "w") -> dict[str, Any]:
    r = client.post("/api/workflows", {"workflow_type": "T", "workflow_id": workflow_id},
                    format="json")
    assert r.status_code == 201, r.content
    return dict(r.json())


@pytest.mark.django_db
def test_running_run_without_wait(api_client: APIClient) -> None:
    started = start(api_client)
    body = api_client.get("/api/workflows/w/result").json()
    assert body["status"] == "running" and body["run_id"] == started["run_id"]
    assert body["result"] is None and body["failure"] is None


@pytest.mark.django_db
def test_wait_times_out_with_status_running(api_client: APIClient) -> None:
    start(api_client)
    began = time.monotonic()
    r = api_client.get("/api/workflows/w/result", {"wait": 0.4})
    assert r.status_code == 200
    assert 0.35 <= time.monotonic() - began < 2
    assert r.json()["status"] == "running"


@pytest.mark.django_db
def test_completed_result(api_client: APIClient, engine: Engine) -> None:
    start(api_client)
    engine.complete_workflow("w", ["done", 1])
    began = time.monotonic()
    body = api_client.get("/api/workflows/w/result", {"wait": 30}).json()
    assert time.monotonic() - began < 1
    assert body["status"] == "completed" and body["result"] == ["done", 1]
    assert body["failure"] is None and body["closed_at"]


@pytest.mark.django_db
def test_failed_result(api_client: APIClient, engine: Engine) -> None:
    start(api_client)
    engine.complete_task("w", [{"kind": "fail_workflow",
                                "failure": {"type": "ValueError", "message": "bad"}}])
    body = api_client.get("/api/workflows/w/result").json()
    assert body["status"] == "failed"
    assert body["failure"]["type"] == "ValueError" and body["failure"]["message"] == "bad"


@pytest.mark.django_db
def test_result_of_a_given_run(api_client: APIClient) -> None:
    first = start(api_client)
    api_client.post("/api/workflows/w/terminate", {}, format="json")
    start(api_client)
    body = api_client.get("/api/workflows/w/result", {"run_id": first["run_id"]}).json()
    assert body["status"] == "terminated" and body["run_id"] == first["run_id"]


@pytest.mark.django_db(transaction=True)
def test_wait_returns_when_the_run_closes(api_client: APIClient, engine: Engine) -> None:
    start(api_client)

    def finish() -> None:
        try:
            time.sleep(0.3)
            engine.complete_workflow("w", "ok")
        finally:
            connection.close()

    thread = threading.Thread(target=finish)
    thread.start()
    began = time.monotonic()
    body = api_client.get("/api/workflows/w/result", {"wait": 10}).json()
    elapsed = time.monotonic() - began
    thread.join()
    assert 0.25 <= elapsed < 3
    assert body["status"] == "completed" and body["result"] == "ok"


@pytest.mark.django_db(transaction=True)
def test_a_wait_is_woken_by_its_own_run_closing_only(api_client: APIClient, engine: Engine,
                                                     run_reads: list[int]) -> None:
    start(api_client, "a")
    start(api_client, "b")
    a = engine.open_run("a").pk
    watched: list[dict[int, int]] = []

    def commit_others_then_close_a() -> None:
        try:
            time.sleep(0.2)
            watched.append(changes.watched())
            for n in range(5):
                api_client.post("/api/workflows/b/signals", {"name": f"s{n}"}, format="json")
            api_client.post("/api/workflows/a/signals", {"name": "a1"}, format="json")
            time.sleep(0.2)
            engine.complete_workflow("a", "ok")
        finally:
            connection.close()

    thread = threading.Thread(target=commit_others_then_close_a)
    thread.start()
    body = api_client.get("/api/workflows/a/result", {"wait": 10}).json()
    thread.join()
    assert body["status"] == "completed"
    assert watched == [{a: 1}]
    # One read before waiting, one after the commit that closed run a: run b's five commits
    # woke nothing, nor did run a's commits that left it open (a signal, its task started).
    assert run_reads == [a, a]
    assert changes.watched() == {}


@pytest.mark.django_db
def test_a_wait_is_clamped_to_the_configured_cap(api_client: APIClient, settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, max_wait_seconds=0.3)
    start(api_client)
    began = time.monotonic()
    r = api_client.get("/api/workflows/w/result", {"wait": 60})
    assert r.status_code == 200 and r.json()["status"] == "running"
    assert time.monotonic() - began < 30  # the cap's 0.3 s, not the 60 asked for


@pytest.mark.django_db
@pytest.mark.parametrize("ending", ["running", "completed", "failed"])
def test_answer_bodies_are_the_serializers(api_client: APIClient, engine: Engine,
                                           ending: str) -> None:
    """The start's and the result's bodies, built without a serializer instance, are what
    their schema's serializers render (``run_ref``, ``result_body``)."""
    from workflows.api.views import RunRefSerializer, WorkflowResultApi, result_body, run_ref
    from workflows.models import Execution

    start(api_client)
    if ending == "completed":
        engine.complete_workflow("w", {"n": [1, "two", None]})
    elif ending == "failed":
        engine.complete_task("w", [{"kind": "fail_workflow",
                                    "failure": {"type": "E", "message": "no"}}])
    run = Execution.objects.get(workflow_id="w")
    assert result_body(run) == dict(WorkflowResultApi.ResultOutputSerializer(run).data)
    assert run_ref(run) == dict(RunRefSerializer(run).data)
    body = api_client.get("/api/workflows/w/result").json()
    assert body == dict(WorkflowResultApi.ResultOutputSerializer(run).data)
    assert (body["closed_at"] is None) == (ending == "running")
