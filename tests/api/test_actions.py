"""POST signals / cancel / terminate."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import Engine
from workflows.models import Execution

pytestmark = pytest.mark.django_db


def start(client: APIClient, workflow_id: str = "w") -> dict[str, Any]:
    r = client.post("/api/workflows", {"workflow_type": "T", "workflow_id": workflow_id},
                    format="json")
    assert r.status_code == 201, r.content
    return dict(r.json())


def events(workflow_id: str = "w") -> list[tuple[str, dict[str, Any]]]:
    run = Execution.objects.filter(workflow_id=workflow_id).latest("created_at")
    return [(e.event_type, e.attributes) for e in run.events.order_by("event_id")]


def test_signal(api_client: APIClient) -> None:
    started = start(api_client)
    r = api_client.post("/api/workflows/w/signals", {"name": "approve", "input": {"by": "ada"}},
                        format="json")
    assert r.status_code == 202
    assert r.json() == {"workflow_id": "w", "run_id": started["run_id"], "status": "running"}
    assert events()[-1] == ("WorkflowExecutionSignaled",
                            {"signal_name": "approve", "input": {"by": "ada"}})


def test_signal_with_run_id(api_client: APIClient) -> None:
    started = start(api_client)
    r = api_client.post("/api/workflows/w/signals",
                        {"name": "s", "run_id": started["run_id"]}, format="json")
    assert r.status_code == 202
    r = api_client.post("/api/workflows/w/signals",
                        {"name": "s", "run_id": "00000000-0000-0000-0000-000000000001"},
                        format="json")
    assert r.status_code == 404


def test_cancel(api_client: APIClient) -> None:
    start(api_client)
    r = api_client.post("/api/workflows/w/cancel", {"reason": "customer asked"}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "running"
    assert ("WorkflowExecutionCancelRequested", {"reason": "customer asked"}) in events()
    assert api_client.get("/api/workflows/w").json()["cancel_requested"] is True
    # Asking again is accepted and records nothing new.
    n = len(events())
    assert api_client.post("/api/workflows/w/cancel", {}, format="json").status_code == 202
    assert len(events()) == n


def test_cancel_with_empty_body(api_client: APIClient) -> None:
    start(api_client)
    r = api_client.generic("POST", "/api/workflows/w/cancel", "",
                           content_type="application/json")
    assert r.status_code == 202


def test_terminate(api_client: APIClient) -> None:
    start(api_client)
    r = api_client.post("/api/workflows/w/terminate", {"reason": "stuck"}, format="json")
    assert r.status_code == 202 and r.json()["status"] == "terminated"
    assert events()[-1] == ("WorkflowExecutionTerminated", {"reason": "stuck"})


@pytest.mark.parametrize("action", ["signals", "cancel", "terminate"])
@pytest.mark.parametrize("close", ["terminate", "complete"])
def test_actions_on_a_closed_run_are_409(api_client: APIClient, engine: Engine, action: str,
                                         close: str) -> None:
    started = start(api_client)
    if close == "terminate":
        api_client.post("/api/workflows/w/terminate", {}, format="json")
    else:
        engine.complete_workflow("w", 1)
    body = {"name": "s"} if action == "signals" else {}
    before = len(events())
    r = api_client.post(f"/api/workflows/w/{action}", body, format="json")
    assert r.status_code == 409
    error = r.json()["error"]
    assert error["code"] == "run_closed"
    assert error["run_id"] == started["run_id"]
    assert error["status"] in ("terminated", "completed")
    assert len(events()) == before
