"""GET /api/workflows/{id}: the run's status and pending work."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import Engine
from workflows import services

pytestmark = pytest.mark.django_db


def start(client: APIClient, workflow_id: str = "w", **body: Any) -> dict[str, Any]:
    r = client.post("/api/workflows", {"workflow_type": "T", "workflow_id": workflow_id,
                                       **body}, format="json")
    assert r.status_code == 201, r.content
    return dict(r.json())


def test_a_new_run(api_client: APIClient) -> None:
    started = start(api_client, input=[1, "two", {"3": None}], task_queue="q")
    body = api_client.get("/api/workflows/w").json()
    assert body["workflow_id"] == "w" and body["run_id"] == started["run_id"]
    assert (body["workflow_type"], body["task_queue"], body["status"]) == ("T", "q", "running")
    assert body["input"] == [1, "two", {"3": None}]
    assert body["result"] is None and body["failure"] is None and body["closed_at"] is None
    assert body["created_at"]
    assert body["history_length"] == 2  # started, workflow task scheduled
    assert body["pending_activities"] == [] and body["pending_timers"] == []
    assert body["last_task_failure"] is None and body["parent"] is None
    assert body["cancel_requested"] is False


def test_completed_run_has_its_result(api_client: APIClient, engine: Engine) -> None:
    start(api_client)
    engine.complete_workflow("w", {"total": 42})
    body = api_client.get("/api/workflows/w").json()
    assert body["status"] == "completed"
    assert body["result"] == {"total": 42}
    assert body["closed_at"] is not None
    assert body["history_length"] == 5


def test_pending_activities_and_timers(api_client: APIClient, engine: Engine) -> None:
    start(api_client)
    engine.complete_task("w", [
        {"kind": "schedule_activity", "seq": 1, "activity_type": "charge", "input": 10,
         "retry_policy": {"initial_interval_ms": 60_000}},
        {"kind": "schedule_activity", "seq": 2, "activity_type": "ship"},
        {"kind": "start_timer", "seq": 3, "duration_ms": 3_600_000},
    ])
    task = engine.lease_activity("w", 1)
    services.activity_task_heartbeat(token=task.token, details={"progress": 0.5})
    services.activity_task_fail(token=task.token,
                                failure={"type": "CardDeclined", "message": "declined"})
    engine.lease_activity("w", 2)
    body = api_client.get("/api/workflows/w").json()
    charge, ship = body["pending_activities"]
    assert charge["seq"] == 1 and charge["activity_type"] == "charge"
    assert charge["state"] == "backoff" and charge["attempt"] == 2
    assert charge["last_failure"]["type"] == "CardDeclined"
    assert charge["last_failure"]["message"] == "declined"
    assert charge["heartbeat_details"] == {"progress": 0.5}
    assert charge["last_heartbeat_at"] is not None
    assert ship["state"] == "started" and ship["attempt"] == 1
    assert ship["last_failure"] is None and ship["heartbeat_details"] is None
    [timer] = body["pending_timers"]
    assert timer["seq"] == 3 and timer["fire_at"]


def test_stuck_run_shows_the_last_task_failure(api_client: APIClient, engine: Engine) -> None:
    start(api_client)
    engine.fail_task("w", "non-determinism: expected TimerStarted")
    body = api_client.get("/api/workflows/w").json()
    assert body["status"] == "running"
    failure = body["last_task_failure"]
    assert failure["message"] == "non-determinism: expected TimerStarted"
    assert failure["cause"] == "workflow_error" and failure["attempt"] == 1


def test_child_run_names_its_parent(api_client: APIClient) -> None:
    parent = start(api_client, "parent")
    from workflows.models import Execution

    services.workflow_start(workflow_type="Child", workflow_id="child",
                            parent=Execution.objects.get(workflow_id="parent"))
    body = api_client.get("/api/workflows/child").json()
    assert body["parent"] == {"workflow_id": "parent", "run_id": parent["run_id"]}


def test_terminated_run_has_its_failure(api_client: APIClient) -> None:
    start(api_client)
    api_client.post("/api/workflows/w/terminate", {"reason": "operator"}, format="json")
    body = api_client.get("/api/workflows/w").json()
    assert body["status"] == "terminated"
    assert body["failure"]["type"] == "Terminated"
    assert body["failure"]["message"] == "operator"
