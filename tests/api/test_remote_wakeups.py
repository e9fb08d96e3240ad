"""Long polls see what another engine process committed: one poller per process reads the
watched runs in one statement per round and wakes their waiters; waiters never poll one by
one (``workflows.changes``)."""

from __future__ import annotations

import threading
import time
from typing import Any

import pytest
from django.db import connection
from django.utils import timezone
from rest_framework.test import APIClient

from workflows import changes, selectors
from workflows.models import Execution


def start(client: APIClient, workflow_id: str) -> int:
    r = client.post("/api/workflows", {"workflow_type": "T", "workflow_id": workflow_id},
                    format="json")
    assert r.status_code == 201, r.content
    return int(Execution.objects.get(workflow_id=workflow_id).pk)


def _as_another_process(pk: int, **row: Any) -> None:
    """Commit a change of the run's row the way another engine process's commit looks from
    here: no commit hook of this process runs."""
    try:
        time.sleep(0.5)
        Execution.objects.filter(pk=pk).update(**row)
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True)
def test_a_run_closed_by_another_process_answers_a_waiting_result(
        api_client: APIClient) -> None:
    pk = start(api_client, "elsewhere")
    closer = threading.Thread(target=_as_another_process, args=(pk,), kwargs={
        "status": "completed", "result": {"done": True}, "closed_at": timezone.now()})
    closer.start()
    began = time.monotonic()
    body = api_client.get("/api/workflows/elsewhere/result", {"wait": 20}).json()
    closer.join()
    assert body["status"] == "completed" and body["result"] == {"done": True}
    assert time.monotonic() - began < 15  # woken, not answered at the end of the wait
    assert changes.watched() == {}


@pytest.mark.django_db(transaction=True)
def test_waiters_do_not_poll_one_by_one(api_client: APIClient) -> None:
    pks = [start(api_client, f"idle-{i}") for i in range(12)]
    reads: dict[int, int] = dict.fromkeys(pks, 0)
    lock = threading.Lock()
    rounds_before = changes.polls

    def wait_on(pk: int) -> None:
        def read() -> int:
            with lock:
                reads[pk] += 1
            return pk
        try:
            selectors.poll(pk, read, lambda _: False, wait=3.0)
        finally:
            connection.close()

    waiters = [threading.Thread(target=wait_on, args=(pk,)) for pk in pks]
    for w in waiters:
        w.start()
    for w in waiters:
        w.join()
    # Each waiter read its idle run before waiting, at most once more (the poller's first look
    # at a run it had not seen), and once when its wait ended: not every poll interval (3 s
    # of 0.25 s rounds); the poller made its rounds for all of them together.
    assert all(2 <= n <= 3 for n in reads.values()), reads
    assert changes.polls - rounds_before >= 2
    assert changes.watched() == {}


@pytest.mark.django_db(transaction=True)
def test_a_history_wait_is_woken_by_another_process_appending(api_client: APIClient) -> None:
    pk = start(api_client, "appended")
    run = Execution.objects.get(pk=pk)
    grower = threading.Thread(target=_as_another_process, args=(pk,),
                              kwargs={"next_event_id": run.next_event_id + 1})
    reads: list[int] = []

    def read() -> int:
        reads.append(1)
        return int(Execution.objects.get(pk=pk).next_event_id)

    grower.start()
    began = time.monotonic()
    value = selectors.poll(pk, read, lambda n: n > run.next_event_id, wait=20)
    grower.join()
    assert value == run.next_event_id + 1
    assert time.monotonic() - began < 15
    assert len(reads) <= 3  # before, the poller's first look, the change
