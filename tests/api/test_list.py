"""GET /api/workflows: filters and keyset pagination."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from rest_framework.test import APIClient

from workflows.models import Execution

pytestmark = pytest.mark.django_db


def start(client: APIClient, **body: Any) -> dict[str, Any]:
    r = client.post("/api/workflows", {"workflow_type": "T", **body}, format="json")
    assert r.status_code == 201, r.content
    return dict(r.json())


def test_items_carry_the_documented_fields(api_client: APIClient) -> None:
    started = start(api_client, workflow_id="w1", task_queue="q")
    body = api_client.get("/api/workflows").json()
    assert body["next_cursor"] is None
    [item] = body["items"]
    assert set(item) == {"workflow_id", "run_id", "workflow_type", "task_queue", "status",
                         "created_at", "closed_at"}
    assert item["run_id"] == started["run_id"]
    assert (item["workflow_id"], item["task_queue"], item["status"]) == ("w1", "q", "running")
    assert item["closed_at"] is None


def test_filters(api_client: APIClient) -> None:
    start(api_client, workflow_id="a", workflow_type="Order", task_queue="eu")
    start(api_client, workflow_id="b", workflow_type="Order", task_queue="us")
    start(api_client, workflow_id="c", workflow_type="Refund", task_queue="eu")
    api_client.post("/api/workflows/c/terminate", {}, format="json")

    def ids(**query: str) -> list[str]:
        r = api_client.get("/api/workflows", query)
        assert r.status_code == 200
        return sorted(item["workflow_id"] for item in r.json()["items"])

    assert ids() == ["a", "b", "c"]
    assert ids(workflow_type="Order") == ["a", "b"]
    assert ids(task_queue="eu") == ["a", "c"]
    assert ids(status="terminated") == ["c"]
    assert ids(status="running", task_queue="eu") == ["a"]
    assert ids(workflow_id="b") == ["b"]
    assert ids(workflow_type="Nothing") == []


def test_a_query_in_temporals_syntax(api_client: APIClient) -> None:
    start(api_client, workflow_id="order-1", workflow_type="Order", task_queue="eu")
    start(api_client, workflow_id="order-2", workflow_type="Order", task_queue="us")
    start(api_client, workflow_id="refund-1", workflow_type="Refund", task_queue="eu")
    api_client.post("/api/workflows/order-2/terminate", {}, format="json")
    first = Execution.objects.get(workflow_id="order-1")
    Execution.objects.filter(pk=first.pk).update(
        created_at=first.created_at - timedelta(days=2))
    cutoff = (first.created_at - timedelta(days=1)).isoformat()

    def ids(query: str, **more: str) -> list[str]:
        r = api_client.get("/api/workflows", {"query": query, **more})
        assert r.status_code == 200, r.content
        return sorted(item["workflow_id"] for item in r.json()["items"])

    assert ids("WorkflowType = 'Order'") == ["order-1", "order-2"]
    assert ids("WorkflowType = 'Order' AND ExecutionStatus = 'Running'") == ["order-1"]
    assert ids("TaskQueue = 'eu' OR ExecutionStatus = 'Terminated'") == [
        "order-1", "order-2", "refund-1"]
    assert ids("WorkflowId STARTS_WITH 'order-' AND TaskQueue NOT IN ('us')") == ["order-1"]
    assert ids("CloseTime IS NOT NULL") == ["order-2"]
    assert ids("CloseTime IS NULL AND WorkflowType != 'Refund'") == ["order-1"]
    assert ids(f"StartTime < '{cutoff}'") == ["order-1"]
    assert ids(f"StartTime >= '{cutoff}'") == ["order-2", "refund-1"]
    assert ids(f"RunId = '{first.run_id}'") == ["order-1"]
    assert ids("ExecutionStatus = 'Running'", task_queue="eu") == ["order-1", "refund-1"]
    assert ids("WorkflowId = 'it''s'") == []


@pytest.mark.parametrize("query", ["WorkflowId =", "Owner = 'x'", "StartTime > 'soon'",
                                   "WorkflowId = 'x' ORDER BY StartTime"])
def test_a_query_that_does_not_parse_is_422(api_client: APIClient, query: str) -> None:
    r = api_client.get("/api/workflows", {"query": query})
    assert r.status_code == 422
    body = r.json()["error"]
    assert body["code"] == "invalid_query"
    assert "at character" in body["message"]


def test_cursor_pagination_walks_every_run_once_newest_first(api_client: APIClient) -> None:
    for i in range(25):
        start(api_client, workflow_id=f"w{i:02d}")
    # Several runs share a created_at: the keyset's id breaks the tie.
    same = Execution.objects.order_by("id")[:5]
    Execution.objects.filter(pk__in=[e.pk for e in same]).update(
        created_at=same[0].created_at)
    seen: list[str] = []
    cursor = None
    pages = 0
    while True:
        query: dict[str, Any] = {"page_size": 7}
        if cursor:
            query["cursor"] = cursor
        body = api_client.get("/api/workflows", query).json()
        pages += 1
        seen += [item["workflow_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert pages == 4
    assert sorted(seen) == [f"w{i:02d}" for i in range(25)]
    assert len(set(seen)) == 25
    expected = list(Execution.objects.order_by("-created_at", "-id")
                    .values_list("workflow_id", flat=True))
    assert seen == expected


def test_new_runs_do_not_shift_later_pages(api_client: APIClient) -> None:
    for i in range(4):
        start(api_client, workflow_id=f"old{i}")
    Execution.objects.update(created_at=Execution.objects.get(workflow_id="old0").created_at
                             - timedelta(hours=1))
    first = api_client.get("/api/workflows", {"page_size": 2}).json()
    start(api_client, workflow_id="new")
    second = api_client.get("/api/workflows",
                            {"page_size": 2, "cursor": first["next_cursor"]}).json()
    got = [i["workflow_id"] for i in first["items"] + second["items"]]
    assert sorted(got) == ["old0", "old1", "old2", "old3"]


def test_page_size_bounds(api_client: APIClient) -> None:
    start(api_client)
    assert api_client.get("/api/workflows", {"page_size": 1000}).status_code == 200
    assert api_client.get("/api/workflows", {"page_size": 1001}).status_code == 422
