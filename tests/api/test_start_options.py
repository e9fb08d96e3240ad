"""POST /api/workflows (and :batch) with ``id_conflict_policy`` and signal-with-start
(``start_signal``, ``start_signal_input``): status 201 with ``started`` true for a run it
started, 200 with ``started`` false for the open run it found."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from tests.api.conftest import Engine
from workflows.models import Execution, HistoryEvent

pytestmark = pytest.mark.django_db
URL = "/api/workflows"


def post(client: APIClient, body: Any, url: str = URL) -> tuple[int, Any]:
    r = client.post(url, body, format="json")
    return r.status_code, r.json()


def events(workflow_id: str) -> list[str]:
    return list(HistoryEvent.objects.filter(execution__workflow_id=workflow_id)
                .order_by("execution_id", "event_id").values_list("event_type", flat=True))


def signals(workflow_id: str) -> list[tuple[str, Any]]:
    return [(e.attributes["signal_name"], e.attributes["input"])
            for e in HistoryEvent.objects.filter(execution__workflow_id=workflow_id,
                                                 event_type="WorkflowExecutionSignaled")
            .order_by("execution_id", "event_id")]


def test_a_start_answers_201_and_started_true(api_client: APIClient) -> None:
    r = api_client.post(URL, {"workflow_type": "T", "workflow_id": "w"}, format="json")
    assert r.status_code == 201
    body = r.json()
    assert body["started"] is True
    assert set(body) == {"workflow_id", "run_id", "status", "started"}
    assert r["Location"] == f"/api/workflows/w?run_id={body['run_id']}"


@pytest.mark.parametrize("policy", [{}, {"id_conflict_policy": "fail"},
                                    {"id_conflict_policy": None}])
def test_fail_is_the_default_409(api_client: APIClient, policy: dict[str, Any]) -> None:
    _, first = post(api_client, {"workflow_type": "T", "workflow_id": "w"})
    status, answer = post(api_client, {"workflow_type": "T", "workflow_id": "w", **policy})
    assert status == 409
    assert answer["error"]["code"] == "workflow_already_started"
    assert answer["error"]["run_id"] == first["run_id"]


def test_use_existing_answers_200_with_the_open_run(api_client: APIClient) -> None:
    _, first = post(api_client, {"workflow_type": "T", "workflow_id": "w", "input": 1})
    r = api_client.post(URL, {"workflow_type": "T", "workflow_id": "w", "input": 2,
                              "id_conflict_policy": "use_existing"}, format="json")
    assert r.status_code == 200
    assert r.json() == {**first, "started": False}
    assert r["Location"] == f"/api/workflows/w?run_id={first['run_id']}"
    assert events("w") == ["WorkflowExecutionStarted", "WorkflowTaskScheduled"]
    assert Execution.objects.get().input == 1


def test_use_existing_after_the_run_closed_starts_a_new_one(api_client: APIClient,
                                                            engine: Engine) -> None:
    body = {"workflow_type": "T", "workflow_id": "w", "id_conflict_policy": "use_existing"}
    status, first = post(api_client, body)
    assert status == 201 and first["started"] is True
    engine.complete_workflow("w", "done")
    status, again = post(api_client, body)
    assert status == 201 and again["started"] is True
    assert again["run_id"] != first["run_id"]


@pytest.mark.parametrize(("change", "code", "field", "theirs"), [
    ({"workflow_type": "Other"}, "workflow_type_mismatch", "workflow_type", "T"),
    ({"task_queue": "eu"}, "task_queue_mismatch", "task_queue", "default"),
])
def test_use_existing_refuses_an_open_run_of_another_type_or_queue(
        api_client: APIClient, change: dict[str, str], code: str, field: str,
        theirs: str) -> None:
    _, first = post(api_client, {"workflow_type": "T", "workflow_id": "w"})
    status, answer = post(api_client, {"workflow_type": "T", "workflow_id": "w",
                                       "id_conflict_policy": "use_existing", **change})
    assert status == 409, answer
    error = answer["error"]
    assert error["code"] == code
    assert error["run_id"] == first["run_id"]
    assert error[field] == theirs
    assert field in error["message"]


def test_signal_with_start_starts_the_run_with_its_signal(api_client: APIClient) -> None:
    status, body = post(api_client, {"workflow_type": "T", "workflow_id": "w", "input": 1,
                                     "start_signal": "go", "start_signal_input": {"by": "a"}})
    assert status == 201 and body["started"] is True
    assert events("w") == ["WorkflowExecutionStarted", "WorkflowExecutionSignaled",
                           "WorkflowTaskScheduled"]
    assert signals("w") == [("go", {"by": "a"})]


def test_signal_with_start_signals_the_open_run(api_client: APIClient) -> None:
    _, first = post(api_client, {"workflow_type": "T", "workflow_id": "w"})
    status, body = post(api_client, {"workflow_type": "T", "workflow_id": "w",
                                     "start_signal": "go", "start_signal_input": 5,
                                     "id_conflict_policy": "use_existing"})
    assert status == 200
    assert body == {**first, "started": False}
    assert signals("w") == [("go", 5)]
    assert Execution.objects.count() == 1


def test_signal_with_start_of_an_open_run_of_another_type_is_refused(
        api_client: APIClient) -> None:
    post(api_client, {"workflow_type": "T", "workflow_id": "w"})
    status, answer = post(api_client, {"workflow_type": "Other", "workflow_id": "w",
                                       "start_signal": "go"})
    assert status == 409 and answer["error"]["code"] == "workflow_type_mismatch"
    assert signals("w") == []


@pytest.mark.parametrize(("body", "field"), [
    ({"id_conflict_policy": "terminate_existing"}, "id_conflict_policy"),
    ({"id_conflict_policy": 1}, "id_conflict_policy"),
    ({"start_signal": "go", "id_conflict_policy": "fail"}, "id_conflict_policy"),
    ({"start_signal_input": 1}, "start_signal_input"),
    ({"start_signal": ""}, "start_signal"),
    ({"start_signal": 3}, "start_signal"),
    ({"start_signal": "go", "start_signal_input": {"a": "\x00"}}, "start_signal_input"),
])
def test_bad_start_options_are_422(api_client: APIClient, body: dict[str, Any],
                                   field: str) -> None:
    r = api_client.post(URL, {"workflow_type": "T", "workflow_id": "w", **body}, format="json")
    assert r.status_code == 422, r.content
    assert field in r.json()["error"]["fields"]
    assert Execution.objects.count() == 0


# ---- request ids ------------------------------------------------------------------------------


def test_a_retried_use_existing_gets_the_first_answer(api_client: APIClient,
                                                      engine: Engine) -> None:
    _, first = post(api_client, {"workflow_type": "T", "workflow_id": "w"})
    body = {"workflow_type": "T", "workflow_id": "w", "id_conflict_policy": "use_existing",
            "request_id": "r-1"}
    answer = post(api_client, body)
    engine.complete_workflow("w", "done")
    again = post(api_client, body)
    assert answer[0] == again[0] == 200
    assert again[1] == {**answer[1], "status": "completed"}
    assert again[1]["run_id"] == first["run_id"] and again[1]["started"] is False
    assert Execution.objects.count() == 1


def test_a_retried_signal_with_start_is_answered_like_the_first(api_client: APIClient) -> None:
    body = {"workflow_type": "T", "workflow_id": "w", "start_signal": "go",
            "request_id": "s-1"}
    first, again = post(api_client, body), post(api_client, body)
    assert first == again and first[0] == 201
    other = {**body, "start_signal_input": 2, "request_id": "s-2"}
    second, retried = post(api_client, other), post(api_client, other)
    assert second == retried and second[0] == 200 and second[1]["started"] is False
    assert signals("w") == [("go", None), ("go", 2)]


def test_a_signal_with_start_request_id_is_not_a_signals(api_client: APIClient) -> None:
    post(api_client, {"workflow_type": "T", "workflow_id": "w", "start_signal": "go",
                      "request_id": "once"})
    status, answer = post(api_client, {"name": "go", "request_id": "once"},
                          "/api/workflows/w/signals")
    assert status == 409 and answer["error"]["code"] == "request_id_reused"
    assert len(signals("w")) == 1


# ---- the batch -------------------------------------------------------------------------------


def test_batch_items_take_the_start_options(api_client: APIClient) -> None:
    _, first = post(api_client, {"workflow_type": "T", "workflow_id": "open"})
    status, answer = post(api_client, {"workflows": [
        {"workflow_type": "T", "workflow_id": "open", "id_conflict_policy": "use_existing"},
        {"workflow_type": "T", "workflow_id": "open"},
        {"workflow_type": "T", "workflow_id": "sws", "start_signal": "go",
         "start_signal_input": 1},
        {"workflow_type": "T", "workflow_id": "sws", "start_signal": "go",
         "start_signal_input": 2},
        {"workflow_type": "T", "workflow_id": "sws", "task_queue": "eu",
         "id_conflict_policy": "use_existing"},
        {"workflow_type": "T", "start_signal_input": 1},
    ]}, "/api/workflows:batch")
    assert status == 200, answer
    used, refused, started, signalled, mismatch, invalid = answer["results"]
    assert used == {**first, "started": False}
    assert refused["error"]["code"] == "workflow_already_started"
    assert started["started"] is True and signalled["started"] is False
    assert signalled["run_id"] == started["run_id"]
    assert mismatch["error"]["code"] == "task_queue_mismatch"
    assert mismatch["error"]["run_id"] == started["run_id"]
    assert invalid["error"]["code"] == "invalid_input"
    assert signals("sws") == [("go", 1), ("go", 2)]
