"""Long polls are bounded per engine process (``SCHED_MAX_WAITERS``): one more is a 503
``too_many_waiters`` with ``Retry-After``, at once; requests that do not wait still pass."""

from __future__ import annotations

import dataclasses
import threading
import time
from typing import Any

import pytest
from django.conf import settings
from rest_framework.test import APIClient

from workflows import services
from workflows.api import waiters

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def one_waiter(settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, max_waiters=1)


def _until(condition: Any, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.mark.parametrize("suffix", ["result?", "history?after=2&"])
def test_one_waiter_too_many_is_503_and_the_slot_comes_back(api_token: str, one_waiter: None,
                                                            suffix: str) -> None:
    services.workflow_start(workflow_type="T", workflow_id="w")
    services.workflow_start(workflow_type="T", workflow_id="other")

    def client() -> APIClient:
        c = APIClient()
        c.credentials(HTTP_AUTHORIZATION=f"Bearer {api_token}")
        return c

    answers: list[Any] = []
    first = threading.Thread(target=lambda: answers.append(
        client().get(f"/api/workflows/w/{suffix}wait=30")))
    first.start()
    try:
        _until(lambda: waiters.waiting() == 1)
        r = client().get(f"/api/workflows/other/{suffix}wait=5")
        assert r.status_code == 503
        assert r.json()["error"]["code"] == "too_many_waiters"
        assert r.json()["error"]["limit"] == 1
        assert int(r["Retry-After"]) >= 1
        # Without wait, nothing is held: answered at once.
        assert client().get(f"/api/workflows/other/{suffix}").status_code == 200
    finally:
        services.workflow_terminate(workflow_id="w")  # wakes the first waiter
        first.join(timeout=60)
    assert answers and answers[0].status_code == 200
    assert waiters.waiting() == 0
    r = client().get(f"/api/workflows/other/{suffix}wait=0.2")
    assert r.status_code == 200


def test_the_default_admits_many(api_client: APIClient) -> None:
    assert settings.SCHED.max_waiters >= 100


def test_the_lean_result_path_is_bounded_too(api_token: str, settings: Any) -> None:
    """The engine's ASGI application answers a plain result call itself (workflows.api.fast):
    its waits take a slot like the view's."""
    from tests.api.test_body_guard import Client as AsgiClient

    settings.SCHED = dataclasses.replace(settings.SCHED, max_waiters=0)
    services.workflow_start(workflow_type="T", workflow_id="w")
    auth = {"authorization": f"Bearer {api_token}", "host": "127.0.0.1"}
    status, body = AsgiClient([b""]).request("GET", "/api/workflows/w/result?wait=5", auth)
    assert status == 503 and body["error"]["code"] == "too_many_waiters"
    status, body = AsgiClient([b""]).request("GET", "/api/workflows/w/result", auth)
    assert status == 200 and body["status"] == "running"
