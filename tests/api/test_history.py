"""GET /api/workflows/{id}/history: paging with after/limit, and the long poll."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from workflows import services
from workflows.models import Execution


def start(client: APIClient, workflow_id: str = "w") -> dict[str, Any]:
    r = client.post("/api/workflows", {"workflow_type": "T", "workflow_id": workflow_id},
                    format="json")
    assert r.status_code == 201, r.content
    return dict(r.json())


def signal(client: APIClient, n: int, workflow_id: str = "w") -> None:
    for i in range(n):
        r = client.post(f"/api/workflows/{workflow_id}/signals", {"name": "s", "input": i},
                        format="json")
        assert r.status_code == 202


@pytest.mark.django_db
def test_full_history(api_client: APIClient) -> None:
    started = start(api_client)
    body = api_client.get("/api/workflows/w/history").json()
    assert body["run_id"] == started["run_id"] and body["status"] == "running"
    assert body["next_after"] is None
    first, second = body["events"]
    assert set(first) == {"event_id", "event_type", "timestamp", "attributes"}
    assert (first["event_id"], first["event_type"]) == (1, "WorkflowExecutionStarted")
    assert first["attributes"]["workflow_type"] == "T"
    assert (second["event_id"], second["event_type"]) == (2, "WorkflowTaskScheduled")


@pytest.mark.django_db
def test_paging_with_after_and_limit(api_client: APIClient) -> None:
    start(api_client)
    signal(api_client, 8)  # 2 + 8 events
    seen: list[int] = []
    after = 0
    pages = 0
    while True:
        body = api_client.get("/api/workflows/w/history", {"after": after, "limit": 3}).json()
        pages += 1
        seen += [e["event_id"] for e in body["events"]]
        if body["next_after"] is None:
            break
        assert body["next_after"] == body["events"][-1]["event_id"]
        after = body["next_after"]
    assert seen == list(range(1, 11))
    assert pages == 4
    body = api_client.get("/api/workflows/w/history", {"after": 7}).json()
    assert [e["event_id"] for e in body["events"]] == [8, 9, 10]
    assert api_client.get("/api/workflows/w/history", {"after": 10}).json()["events"] == []
    assert api_client.get("/api/workflows/w/history", {"after": 99}).json()["events"] == []


@pytest.mark.django_db
def test_history_of_an_older_run(api_client: APIClient) -> None:
    first = start(api_client)
    signal(api_client, 1)
    api_client.post("/api/workflows/w/terminate", {}, format="json")
    start(api_client)
    body = api_client.get("/api/workflows/w/history", {"run_id": first["run_id"]}).json()
    assert body["run_id"] == first["run_id"] and body["status"] == "terminated"
    assert [e["event_type"] for e in body["events"]][-1] == "WorkflowExecutionTerminated"
    latest = api_client.get("/api/workflows/w/history").json()
    assert latest["run_id"] != first["run_id"] and len(latest["events"]) == 2


@pytest.mark.django_db
def test_wait_times_out_with_no_new_events(api_client: APIClient) -> None:
    start(api_client)
    began = time.monotonic()
    body = api_client.get("/api/workflows/w/history", {"after": 2, "wait": 0.3}).json()
    assert 0.25 <= time.monotonic() - began < 2
    assert body["events"] == [] and body["next_after"] is None and body["status"] == "running"


@pytest.mark.django_db
def test_wait_on_a_closed_run_answers_at_once(api_client: APIClient) -> None:
    start(api_client)
    api_client.post("/api/workflows/w/terminate", {}, format="json")
    began = time.monotonic()
    body = api_client.get("/api/workflows/w/history", {"after": 3, "wait": 30}).json()
    assert time.monotonic() - began < 1
    assert body["events"] == [] and body["status"] == "terminated"


@pytest.mark.django_db
def test_wait_with_events_already_there_answers_at_once(api_client: APIClient) -> None:
    start(api_client)
    began = time.monotonic()
    body = api_client.get("/api/workflows/w/history", {"after": 1, "wait": 30}).json()
    assert time.monotonic() - began < 1
    assert [e["event_id"] for e in body["events"]] == [2]


@pytest.mark.django_db
def test_wait_above_the_cap_is_clamped_not_refused(api_client: APIClient,
                                                   monkeypatch: Any) -> None:
    from workflows import selectors

    seen: dict[str, Any] = {}
    real = selectors.history_page

    def spy(**kwargs: Any) -> Any:
        seen.update(kwargs)
        return real(**{**kwargs, "wait": 0})

    monkeypatch.setattr(selectors, "history_page", spy)
    start(api_client)
    assert api_client.get("/api/workflows/w/history", {"wait": 3600}).status_code == 200
    assert seen["wait"] == 60


def _signal_later(workflow_id: str, delay: float) -> threading.Thread:
    def run() -> None:
        try:
            time.sleep(delay)
            services.workflow_signal(workflow_id=workflow_id, name="wake", input=None)
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    return thread


@pytest.mark.django_db(transaction=True)
def test_long_poll_returns_early_when_an_event_arrives(api_client: APIClient) -> None:
    start(api_client)
    thread = _signal_later("w", 0.3)
    began = time.monotonic()
    body = api_client.get("/api/workflows/w/history", {"after": 2, "wait": 10}).json()
    elapsed = time.monotonic() - began
    thread.join()
    assert 0.25 <= elapsed < 3
    assert [e["event_type"] for e in body["events"]] == ["WorkflowExecutionSignaled"]
    assert body["events"][0]["attributes"]["signal_name"] == "wake"


@pytest.mark.django_db(transaction=True)
def test_a_history_wait_is_woken_by_its_own_run_only(api_client: APIClient,
                                                     run_reads: list[int]) -> None:
    start(api_client, "a")
    start(api_client, "b")
    a = Execution.objects.get(workflow_id="a").pk

    def commit_b_then_a() -> None:
        try:
            time.sleep(0.2)
            signal(api_client, 5, "b")
            time.sleep(0.2)
            signal(api_client, 1, "a")
        finally:
            connection.close()

    thread = threading.Thread(target=commit_b_then_a)
    thread.start()
    body = api_client.get("/api/workflows/a/history", {"after": 2, "wait": 10}).json()
    thread.join()
    assert [e["event_type"] for e in body["events"]] == ["WorkflowExecutionSignaled"]
    assert run_reads == [a, a]  # before waiting, and after run a's commit: b's woke nothing
