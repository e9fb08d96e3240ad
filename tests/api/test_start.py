"""POST /api/workflows: starting runs."""

from __future__ import annotations

import uuid

import pytest
from rest_framework.test import APIClient

from timers.models import Timer, TimerKind
from workflows.models import Execution

pytestmark = pytest.mark.django_db


def test_start_answers_201_with_the_new_run(api_client: APIClient) -> None:
    r = api_client.post("/api/workflows", {"workflow_type": "Greet", "input": {"name": "ada"},
                                           "workflow_id": "greet-1"}, format="json")
    assert r.status_code == 201
    body = r.json()
    assert body["workflow_id"] == "greet-1"
    assert body["status"] == "running"
    run = Execution.objects.get(run_id=uuid.UUID(body["run_id"]))
    assert (run.workflow_type, run.task_queue, run.input) == ("Greet", "default", {"name": "ada"})
    assert r["Location"] == f"/api/workflows/greet-1?run_id={body['run_id']}"


def test_start_without_workflow_id_generates_one(api_client: APIClient) -> None:
    r = api_client.post("/api/workflows", {"workflow_type": "Greet"}, format="json")
    assert r.status_code == 201
    assert uuid.UUID(r.json()["workflow_id"])
    assert Execution.objects.get().input is None


def test_start_with_task_queue_and_timeout(api_client: APIClient) -> None:
    r = api_client.post("/api/workflows", {"workflow_type": "T", "task_queue": "eu",
                                           "execution_timeout": 1.5}, format="json")
    assert r.status_code == 201
    run = Execution.objects.get()
    assert run.task_queue == "eu"
    assert run.events.get(event_id=1).attributes["execution_timeout_ms"] == 1500
    timer = Timer.objects.get(execution=run, kind=TimerKind.WORKFLOW_TIMEOUT)
    assert 1.4 < (timer.fire_at - run.created_at).total_seconds() < 1.6


@pytest.mark.parametrize("workflow_id", ["a/b c?#", "ünïcødé-🚀", "x" * 255, "in ner"])
def test_odd_but_valid_ids_round_trip(api_client: APIClient, workflow_id: str) -> None:
    r = api_client.post("/api/workflows", {"workflow_type": "T", "workflow_id": workflow_id},
                        format="json")
    assert r.status_code == 201
    assert r.json()["workflow_id"] == workflow_id
    from urllib.parse import quote
    r = api_client.get(f"/api/workflows/{quote(workflow_id, safe='')}")
    assert r.status_code == 200
    assert r.json()["workflow_id"] == workflow_id


def test_start_twice_is_409_naming_the_open_run(api_client: APIClient) -> None:
    first = api_client.post("/api/workflows", {"workflow_type": "T", "workflow_id": "dup"},
                            format="json").json()
    r = api_client.post("/api/workflows", {"workflow_type": "T", "workflow_id": "dup"},
                        format="json")
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "workflow_already_started"
    assert error["run_id"] == first["run_id"]
    assert "dup" in error["message"]
    assert Execution.objects.count() == 1


def test_a_closed_workflow_id_can_start_again(api_client: APIClient) -> None:
    first = api_client.post("/api/workflows", {"workflow_type": "T", "workflow_id": "again"},
                            format="json").json()
    assert api_client.post("/api/workflows/again/terminate", {}, format="json").status_code == 202
    r = api_client.post("/api/workflows", {"workflow_type": "T", "workflow_id": "again"},
                        format="json")
    assert r.status_code == 201
    assert r.json()["run_id"] != first["run_id"]
    latest = api_client.get("/api/workflows/again").json()
    assert latest["run_id"] == r.json()["run_id"]
    older = api_client.get("/api/workflows/again", {"run_id": first["run_id"]}).json()
    assert older["status"] == "terminated"
