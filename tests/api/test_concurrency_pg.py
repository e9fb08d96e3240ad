"""Concurrent starts of one workflow id on Postgres: exactly one run, the rest 409."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection
from rest_framework.test import APIClient

from workflows.models import ApiToken, Execution

THREADS = 16

pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(connection.vendor != "postgresql", reason="needs PostgreSQL"),
]


@pytest.mark.django_db(transaction=True)
def test_concurrent_starts_give_exactly_one_run() -> None:
    _, raw = ApiToken.issue("race", scope="api")
    barrier = threading.Barrier(THREADS)
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def start() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        try:
            barrier.wait()
            r = client.post("/api/workflows", {"workflow_type": "T", "workflow_id": "race"},
                            format="json")
            with lock:
                answers.append((r.status_code, r.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert len(answers) == THREADS
    created = [body for status, body in answers if status == 201]
    refused = [body for status, body in answers if status == 409]
    assert len(created) == 1, answers
    assert len(refused) == THREADS - 1, answers
    run_id = created[0]["run_id"]
    assert all(b["error"]["code"] == "workflow_already_started" for b in refused)
    assert all(b["error"]["run_id"] == run_id for b in refused)
    assert [str(r) for r in Execution.objects.values_list("run_id", flat=True)] == [run_id]


def _race_posts(raw: str, body: dict[str, Any]) -> list[tuple[int, Any]]:
    """POST ``body`` to /api/workflows from THREADS threads released at once."""
    barrier = threading.Barrier(THREADS)
    answers: list[tuple[int, Any]] = []
    lock = threading.Lock()

    def start() -> None:
        client = APIClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {raw}")
        try:
            barrier.wait(timeout=30)
            r = client.post("/api/workflows", body, format="json")
            with lock:
                answers.append((r.status_code, r.json()))
        finally:
            connection.close()

    threads = [threading.Thread(target=start) for _ in range(THREADS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    return answers


@pytest.mark.django_db(transaction=True)
def test_concurrent_signal_with_starts_give_one_run_with_every_signal() -> None:
    _, raw = ApiToken.issue("race", scope="api")
    answers = _race_posts(raw, {"workflow_type": "T", "workflow_id": "race",
                                "start_signal": "go", "start_signal_input": 1})
    assert len(answers) == THREADS
    statuses = sorted(status for status, _ in answers)
    assert statuses == [200] * (THREADS - 1) + [201], answers
    [run] = Execution.objects.all()
    assert {body["run_id"] for _, body in answers} == {str(run.run_id)}
    assert [body["started"] for status, body in answers if status == 201] == [True]
    assert run.events.filter(event_type="WorkflowExecutionSignaled").count() == THREADS


@pytest.mark.django_db(transaction=True)
def test_concurrent_use_existing_starts_share_one_run() -> None:
    _, raw = ApiToken.issue("race", scope="api")
    answers = _race_posts(raw, {"workflow_type": "T", "workflow_id": "race",
                                "id_conflict_policy": "use_existing"})
    assert sorted(status for status, _ in answers) == [200] * (THREADS - 1) + [201], answers
    [run] = Execution.objects.all()
    assert {body["run_id"] for _, body in answers} == {str(run.run_id)}
