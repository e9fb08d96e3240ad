"""POST /api/workflows:batch: many starts in one request and one transaction."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from dispatch.models import Task, TaskKind, TaskState
from workflows.api.views import MAX_BATCH_STARTS
from workflows.models import Execution, HistoryEvent

pytestmark = pytest.mark.django_db
URL = "/api/workflows:batch"


def batch(client: APIClient, workflows: Any) -> Any:
    return client.post(URL, {"workflows": workflows}, format="json")


def test_starts_each_item_and_answers_in_order(api_client: APIClient) -> None:
    r = batch(api_client, [{"workflow_type": "T", "workflow_id": f"w{n}", "input": n}
                           for n in range(5)] + [{"workflow_type": "T"}])
    assert r.status_code == 200, r.content
    results = r.json()["results"]
    assert [item["workflow_id"] for item in results[:5]] == [f"w{n}" for n in range(5)]
    assert all(item["status"] == "running" and item["run_id"] for item in results)
    assert set(results[0]) == {"workflow_id", "run_id", "status", "started"}
    assert all(item["started"] is True for item in results)
    assert Execution.objects.count() == 6
    run = Execution.objects.get(workflow_id="w3")
    assert run.input == 3 and str(run.run_id) == results[3]["run_id"]
    assert list(HistoryEvent.objects.filter(execution=run).order_by("event_id")
                .values_list("event_type", flat=True)) == ["WorkflowExecutionStarted",
                                                           "WorkflowTaskScheduled"]
    assert Task.objects.filter(kind=TaskKind.WORKFLOW, state=TaskState.READY).count() == 6


def test_a_refused_item_fails_alone(api_client: APIClient) -> None:
    first = api_client.post("/api/workflows", {"workflow_type": "T", "workflow_id": "taken"},
                            format="json").json()
    r = batch(api_client, [
        {"workflow_type": "T", "workflow_id": "a"},
        {"workflow_type": "T", "workflow_id": "taken"},
        {"workflow_type": "T", "workflow_id": "a"},  # this batch's own run is open too
        {"workflow_type": "", "workflow_id": "bad"},
        {"workflow_type": "T", "nope": 1},
        7,
        {"workflow_type": "T", "workflow_id": "b", "execution_timeout": 5},
    ])
    assert r.status_code == 200, r.content
    a, taken, again, bad, unknown, number, b = r.json()["results"]
    assert a["workflow_id"] == "a" and a["status"] == "running"
    assert taken == {"error": {"code": "workflow_already_started", "run_id": first["run_id"],
                               "message": "workflow 'taken' already has an open run"}}
    assert again["error"]["code"] == "workflow_already_started"
    assert again["error"]["run_id"] == a["run_id"]
    assert bad["error"]["code"] == "invalid_input" and "workflow_type" in bad["error"]["fields"]
    assert unknown["error"]["fields"] == {"nope": ["unknown field."]}
    assert number["error"]["code"] == "invalid_input"
    assert b["workflow_id"] == "b"
    run = Execution.objects.get(workflow_id="b")
    assert run.events.get(event_id=1).attributes["execution_timeout_ms"] == 5000
    assert sorted(Execution.objects.values_list("workflow_id", flat=True)) == ["a", "b", "taken"]


@pytest.mark.parametrize("body", [
    {}, {"workflows": []}, {"workflows": {"workflow_type": "T"}}, [{"workflow_type": "T"}],
    {"workflows": [{"workflow_type": "T"}], "extra": 1},
    {"workflows": [{"workflow_type": "T"}] * (MAX_BATCH_STARTS + 1)},
])
def test_a_body_that_is_not_a_list_of_starts_is_refused(api_client: APIClient,
                                                        body: Any) -> None:
    r = api_client.post(URL, body, format="json")
    assert r.status_code == 422, r.content
    assert r.json()["error"]["code"] == "invalid_input"
    assert Execution.objects.count() == 0


def test_needs_a_token(anon_client: APIClient) -> None:
    r = batch(anon_client, [{"workflow_type": "T"}])
    assert r.status_code == 401
    assert Execution.objects.count() == 0


def test_a_null_item_is_named_in_flat_fields(api_client: APIClient) -> None:
    r = batch(api_client, [{"workflow_type": "T"}, None])
    assert r.status_code == 422, r.content
    assert r.json()["error"]["fields"] == {"workflows.1": ["This field may not be null."]}
    assert Execution.objects.count() == 0
