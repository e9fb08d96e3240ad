"""POST /api/activities/{task_token}/complete|fail|heartbeat (async activity completion)."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from dispatch.models import Task, TaskKind
from tests.api.conftest import Engine
from workflows import services
from workflows.errors import Conflict
from workflows.models import ApiToken, Execution, TokenScope

from .test_actions import events, start

pytestmark = pytest.mark.django_db

SCHEDULE = {"kind": "schedule_activity", "seq": 1, "activity_type": "charge", "input": 5,
            "start_to_close_ms": 60_000,
            "retry_policy": {"maximum_attempts": 2, "initial_interval_ms": 1000}}


def handed_off(api_client: APIClient, engine: Engine) -> str:
    """A run whose activity a worker took and handed to outside code; its task token."""
    start(api_client)
    engine.complete_task("w", [SCHEDULE])
    task = engine.lease_activity("w", 1)
    services.activity_task_hand_off(token=task.token, worker_id="test-worker")
    task.refresh_from_db()
    assert (task.state, task.lease_owner, task.lease_expires_at) == ("leased", "", None)
    return task.token


def post(client: APIClient, token: str, action: str, body: Any) -> Any:
    return client.post(f"/api/activities/{token}/{action}", body, format="json")


def test_complete_records_the_result_once(api_client: APIClient, engine: Engine) -> None:
    token = handed_off(api_client, engine)
    r = post(api_client, token, "complete", {"result": {"charged": 5}})
    assert r.status_code == 204, r.content
    assert events()[-2][0] == "ActivityTaskCompleted"
    assert events()[-2][1]["result"] == {"charged": 5}
    assert events()[-1][0] == "WorkflowTaskScheduled"
    again = post(api_client, token, "complete", {"result": 1})
    assert again.status_code == 409 and again.json()["error"]["code"] == "stale_task"
    assert [e for e, _ in events()].count("ActivityTaskCompleted") == 1


def test_fail_retries_per_the_policy_then_fails_the_activity(
        api_client: APIClient, engine: Engine) -> None:
    token = handed_off(api_client, engine)
    failure = {"type": "Declined", "message": "no", "details": {"card": 1}}
    assert post(api_client, token, "fail", {"failure": failure}).status_code == 204
    task = Task.objects.get(kind=TaskKind.ACTIVITY)
    assert (task.state, task.attempt) == ("backoff", 2)  # retried: no event yet
    assert "ActivityTaskFailed" not in [e for e, _ in events()]
    assert post(api_client, token, "fail", {"failure": failure}).status_code == 409


def test_a_non_retryable_failure_keeps_its_cause(api_client: APIClient, engine: Engine) -> None:
    token = handed_off(api_client, engine)
    failure = {"type": "Declined", "message": "no", "non_retryable": True,
               "cause": {"type": "KeyError", "message": "card"}}
    assert post(api_client, token, "fail", {"failure": failure}).status_code == 204
    [recorded] = [a for e, a in events() if e == "ActivityTaskFailed"]
    assert recorded["failure"]["type"] == "Declined"
    assert recorded["failure"]["cause"]["type"] == "KeyError"


def test_heartbeat_records_details_and_says_whether_to_cancel(
        api_client: APIClient, engine: Engine) -> None:
    token = handed_off(api_client, engine)
    r = post(api_client, token, "heartbeat", {"details": {"done": 3}})
    assert r.status_code == 200 and r.json() == {"cancel_requested": False}
    assert Task.objects.get(kind=TaskKind.ACTIVITY).heartbeat_details == {"done": 3}
    api_client.post("/api/workflows/w/signals", {"name": "stop"}, format="json")  # a task
    engine.complete_task("w", [{"kind": "request_cancel_activity", "seq": 1}])
    assert post(api_client, token, "heartbeat", {}).json() == {"cancel_requested": True}


@pytest.mark.parametrize("token", ["nope", "999999.abcdef", "12x.abc", "0.", "{run}.a%00b",
                                   "{run}." + "a" * 100])
@pytest.mark.parametrize("action", ["complete", "fail", "heartbeat"])
def test_an_unknown_token_is_404(api_client: APIClient, token: str, action: str) -> None:
    start(api_client)
    token = token.format(run=Execution.objects.get(workflow_id="w").pk)
    body = {"failure": {"type": "E"}} if action == "fail" else {}
    r = post(api_client, token, action, body)
    assert r.status_code == 404 and r.json()["error"]["code"] == "activity_not_found"


def test_a_token_of_a_finished_attempt_or_a_workflow_task_is_409(
        api_client: APIClient, engine: Engine) -> None:
    start(api_client)
    run = Execution.objects.get(workflow_id="w")
    workflow_token = engine.take_workflow_task("w")
    for token in (workflow_token, f"{run.pk}.0123456789abcdef01234567"):
        r = post(api_client, token, "complete", {"result": 1})
        assert r.status_code == 409 and r.json()["error"]["code"] == "stale_task"


def test_a_worker_s_own_lease_may_be_completed_by_token_too(
        api_client: APIClient, engine: Engine) -> None:
    start(api_client)
    engine.complete_task("w", [SCHEDULE])
    task = engine.lease_activity("w", 1)
    assert post(api_client, task.token, "complete", {"result": 2}).status_code == 204
    with pytest.raises(Conflict):  # the worker's own completion comes too late
        services.activity_task_complete(token=task.token, result=3, worker_id="test-worker")


@pytest.mark.parametrize(("action", "body", "field"), [
    ("complete", {"result": 1, "extra": 2}, "extra"),
    ("fail", {}, "failure"),
    ("fail", {"failure": "boom"}, "failure"),
    ("fail", {"failure": None}, "failure"),
    ("heartbeat", {"details": "\x00"}, "details"),
])
def test_bad_bodies_are_422_naming_the_field(api_client: APIClient, action: str, body: Any,
                                             field: str) -> None:
    r = post(api_client, "1.abc", action, body)
    assert r.status_code == 422, r.content
    assert field in r.json()["error"]["fields"]


def test_the_api_needs_an_api_token(anon_client: APIClient) -> None:
    assert post(anon_client, "1.abc", "complete", {}).status_code == 401
    _, raw = ApiToken.issue("w", scope=TokenScope.WORKER)
    anon_client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert post(anon_client, "1.abc", "complete", {}).status_code == 403


def test_the_worker_hand_off_is_fenced_by_owner_and_token(
        api_client: APIClient, engine: Engine) -> None:
    start(api_client)
    engine.complete_task("w", [SCHEDULE])
    task = engine.lease_activity("w", 1)
    with pytest.raises(Conflict):
        services.activity_task_hand_off(token=task.token, worker_id="someone-else")
    with pytest.raises(Conflict):
        services.activity_task_hand_off(token="1.nope", worker_id="test-worker")
    services.activity_task_hand_off(token=task.token, worker_id="test-worker")
    with pytest.raises(Conflict):  # handed off already: the worker no longer owns it
        services.activity_task_hand_off(token=task.token, worker_id="test-worker")
