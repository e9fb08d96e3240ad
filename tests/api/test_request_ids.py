"""POST /api/workflows and /signals with a ``request_id``: a retry gets the first answer and
writes nothing; an id reused by another request is refused."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import Engine
from workflows.models import Execution, HistoryEvent

pytestmark = pytest.mark.django_db


def post(client: APIClient, path: str, body: dict[str, Any]) -> tuple[int, Any]:
    r = client.post(path, body, format="json")
    return r.status_code, r.json()


def signals(workflow_id: str) -> int:
    return HistoryEvent.objects.filter(execution__workflow_id=workflow_id,
                                       event_type="WorkflowExecutionSignaled").count()


def test_a_retried_start_gets_the_first_run_even_without_a_workflow_id(
        api_client: APIClient) -> None:
    body = {"workflow_type": "T", "request_id": "start-1"}
    first = post(api_client, "/api/workflows", body)
    again = post(api_client, "/api/workflows", body)
    assert first[0] == again[0] == 201
    assert again[1] == first[1]
    assert Execution.objects.count() == 1


def test_a_retried_start_after_the_run_closed_starts_nothing(api_client: APIClient,
                                                             engine: Engine) -> None:
    body = {"workflow_type": "T", "workflow_id": "w", "request_id": "start-2"}
    _, first = post(api_client, "/api/workflows", body)
    engine.complete_workflow("w", "done")
    status, again = post(api_client, "/api/workflows", body)
    assert status == 201 and again["run_id"] == first["run_id"]
    assert Execution.objects.filter(workflow_id="w").count() == 1


def test_a_retried_signal_is_recorded_once(api_client: APIClient) -> None:
    post(api_client, "/api/workflows", {"workflow_type": "T", "workflow_id": "w"})
    body = {"name": "go", "input": 1, "request_id": "sig-1"}
    first = post(api_client, "/api/workflows/w/signals", body)
    again = post(api_client, "/api/workflows/w/signals", body)
    assert first == again and first[0] == 202
    assert signals("w") == 1
    post(api_client, "/api/workflows/w/signals", {**body, "request_id": "sig-2"})
    post(api_client, "/api/workflows/w/signals", {"name": "go", "input": 1})
    assert signals("w") == 3


@pytest.mark.parametrize(("path", "body"), [
    ("/api/workflows/w/signals", {"name": "go"}),  # a start's id used by a signal
    ("/api/workflows", {"workflow_type": "T", "workflow_id": "other"}),  # another workflow
])
def test_an_id_reused_by_another_request_is_refused(api_client: APIClient, path: str,
                                                    body: dict[str, Any]) -> None:
    post(api_client, "/api/workflows",
         {"workflow_type": "T", "workflow_id": "w", "request_id": "once"})
    status, answer = post(api_client, path, {**body, "request_id": "once"})
    assert status == 409 and answer["error"]["code"] == "request_id_reused"
    assert signals("w") == 0 and Execution.objects.count() == 1


@pytest.mark.parametrize("request_id", ["", "x" * 65, 7, ["a"]])
def test_a_bad_request_id_is_a_422(api_client: APIClient, request_id: Any) -> None:
    status, answer = post(api_client, "/api/workflows",
                          {"workflow_type": "T", "request_id": request_id})
    assert status == 422, answer
    assert "request_id" in answer["error"]["fields"]
    assert Execution.objects.count() == 0


def test_batch_items_take_request_ids(api_client: APIClient) -> None:
    items = [{"workflow_type": "T", "request_id": "b-1"}, {"workflow_type": "T",
                                                          "request_id": "b-1"}]
    status, answer = post(api_client, "/api/workflows:batch", {"workflows": items})
    assert status == 200
    first, second = answer["results"]
    assert first == second and "run_id" in first
    assert Execution.objects.count() == 1
