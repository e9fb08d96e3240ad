"""POST /api/workflows/{workflow_id}/queries/{name}: the REST edge cases (through Django's
test client), and the engine's side of the wire with a worker socket played by the test."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.forms.models import model_to_dict
from rest_framework.test import APIClient

from workflows.models import Execution, HistoryEvent

from .test_start_handoff import QUEUE, connect_worker


def _query(client: APIClient, workflow_id: str, name: str, body: Any = None,
           **extra: Any) -> Any:
    return client.post(f"/api/workflows/{workflow_id}/queries/{name}",
                       {"args": []} if body is None else body, format="json", **extra)


def _start(client: APIClient, workflow_id: str, task_queue: str = QUEUE) -> None:
    r = client.post("/api/workflows", {"workflow_type": "T", "workflow_id": workflow_id,
                                       "task_queue": task_queue}, format="json")
    assert r.status_code == 201, r.content


def _row(workflow_id: str) -> tuple[dict[str, Any], list[tuple[int, str]]]:
    """The run's row, every column, and its history: what a query must not change."""
    run = Execution.objects.get(workflow_id=workflow_id)
    events = list(HistoryEvent.objects.filter(execution=run).order_by("event_id")
                  .values_list("event_id", "event_type"))
    return model_to_dict(run), events


@pytest.fixture
def short_wait(settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, query_worker_wait_seconds=0.3,
                                         query_timeout_seconds=5)


@pytest.mark.django_db
def test_an_unknown_workflow_is_404(api_client: APIClient, short_wait: None) -> None:
    r = _query(api_client, "nobody", "count")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"
    _start(api_client, "known")
    r = _query(api_client, "known", "count",
               {"args": [], "run_id": "00000000-0000-4000-8000-000000000000"})
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_no_worker_is_504_no_worker_after_the_wait_and_writes_nothing(
        api_client: APIClient, short_wait: None) -> None:
    _start(api_client, "lonely", task_queue="nobody-serves-this")
    before = _row("lonely")
    r = _query(api_client, "lonely", "count", {"args": [1, {"a": [2]}]})
    assert r.status_code == 504
    error = r.json()["error"]
    assert error["code"] == "no_worker"
    assert error["workflow_type"] == "T" and error["task_queue"] == "nobody-serves-this"
    assert "'T'" in error["message"] and "'nobody-serves-this'" in error["message"]
    assert _row("lonely") == before


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    {"args": "not a list"},
    {"args": [1], "extra": True},
    {"args": ["nul \u0000 in it"]},
    {"args": [], "run_id": "not-a-uuid"},
    [1, 2],
])
def test_a_bad_body_is_422(api_client: APIClient, body: Any, short_wait: None) -> None:
    _start(api_client, "bodies")
    r = _query(api_client, "bodies", "count", body)
    assert r.status_code == 422, r.content
    assert r.json()["error"]["code"] == "invalid_input"


@pytest.mark.django_db
def test_malformed_json_is_400_and_a_bad_name_422(api_client: APIClient,
                                                  short_wait: None) -> None:
    _start(api_client, "names")
    r = api_client.post("/api/workflows/names/queries/count", data=b"{nope",
                        content_type="application/json")
    assert r.status_code == 400 and r.json()["error"]["code"] == "malformed_json"
    r = _query(api_client, "names", "%20padded")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_name"
    r = api_client.get("/api/workflows/names/queries/count")
    assert r.status_code == 405


@pytest.mark.django_db
def test_a_query_needs_a_token(anon_client: APIClient) -> None:
    assert _query(anon_client, "any", "count").status_code == 401


@pytest.mark.django_db
def test_the_schema_documents_the_query_endpoint() -> None:
    import yaml
    from django.test import Client

    schema = yaml.safe_load(Client().get("/api/schema/").content)
    operation = schema["paths"]["/api/workflows/{workflow_id}/queries/{name}"]["post"]
    assert operation["operationId"] == "workflow_query"
    assert {p["name"] for p in operation["parameters"]} == {"workflow_id", "name"}
    assert {"200", "401", "404", "422", "504"} <= set(operation["responses"])
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(body["properties"]) == {"args", "run_id"}
    assert "query_not_found" in operation["responses"]["404"]["description"]
    assert "no_worker" in operation["responses"]["504"]["description"]


# ---- the engine's side of the wire, with a worker socket played by the test -------------------


def _post_query(client: APIClient, workflow_id: str, name: str,
                args: list[Any]) -> tuple[int, Any]:
    r = _query(client, workflow_id, name, {"args": args})
    return r.status_code, r.json()


async def _next(comm: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    frame: dict[str, Any] = await comm.receive_json_from(timeout=10)
    assert frame["type"] == kind, frame
    return frame


@asynccontextmanager
async def worker_with_run(api_client: APIClient,
                          workflow_id: str) -> AsyncIterator[WebsocketCommunicator]:
    """A worker socket played by the test, which has run the first task of a new run."""
    comm = await connect_worker(max_workflow_tasks=2)
    try:
        await database_sync_to_async(_start)(api_client, workflow_id)
        task = await _next(comm, "workflow_task")
        await comm.send_json_to({"type": "workflow_task_completed", "id": "c1",
                                 "token": task["token"], "commands": []})
        await _next(comm, "ack")
        yield comm
    finally:
        await comm.disconnect()


@pytest.mark.django_db(transaction=True)
def test_a_query_goes_to_the_worker_and_its_answer_back_writing_nothing(
        api_client: APIClient, short_wait: None) -> None:
    async def scenario() -> None:
        async with worker_with_run(api_client, "q1") as comm:
            before = await database_sync_to_async(_row)("q1")
            asked = asyncio.ensure_future(database_sync_to_async(_post_query)(
                api_client, "q1", "count", [1, "two"]))
            query = await _next(comm, "query_task")
            # The worker ran the run's last task: the engine expects it to cache the run.
            assert query["events"] == [] and query["sticky_next_event_id"] == 4
            assert (query["workflow_id"], query["workflow_type"], query["task_queue"]) == (
                "q1", "T", QUEUE)
            assert query["query_name"] == "count" and query["args"] == [1, "two"]
            assert query["history_length"] == len(before[1]) == 4
            # It may read the history under the query's token, and only up to the query.
            await comm.send_json_to({"type": "history_request", "id": "h1",
                                     "token": query["token"], "first_event_id": 1})
            page = await _next(comm, "history")
            assert [e["event_id"] for e in page["events"]] == [1, 2, 3, 4]
            assert page["more"] is False and page["id"] == "h1"
            await comm.send_json_to({"type": "query_result", "id": "r1",
                                     "token": query["token"], "result": {"n": 2**70}})
            assert (await _next(comm, "ack"))["id"] == "r1"
            assert await asked == (200, {"result": {"n": 2**70}})
            # The token is spent: a second answer, or a history read, is stale.
            await comm.send_json_to({"type": "query_result", "id": "r2",
                                     "token": query["token"], "result": 1})
            assert (await _next(comm, "error"))["code"] == "stale_task"
            await comm.send_json_to({"type": "history_request", "id": "h2",
                                     "token": query["token"]})
            assert (await _next(comm, "error"))["code"] == "stale_task"
            assert await database_sync_to_async(_row)("q1") == before

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_the_workers_errors_become_404_and_422(api_client: APIClient,
                                               short_wait: None) -> None:
    async def answer(comm: WebsocketCommunicator, name: str,
                     reply: dict[str, Any]) -> tuple[int, Any]:
        asked = asyncio.ensure_future(database_sync_to_async(_post_query)(
            api_client, "q2", name, []))
        query = await _next(comm, "query_task")
        await comm.send_json_to({"type": "query_result", "token": query["token"], **reply})
        status, body = await asked
        return int(status), body

    async def scenario() -> None:
        async with worker_with_run(api_client, "q2") as comm:
            status, body = await answer(comm, "nope", {"error": "query_not_found",
                                                       "message": "no handler 'nope'"})
            assert status == 404
            assert body["error"] == {"code": "query_not_found", "message": "no handler 'nope'"}
            status, body = await answer(comm, "boom", {"error": "query_failed",
                                                       "message": "KeyError: 'x'"})
            assert status == 422
            assert body["error"] == {"code": "query_failed", "message": "KeyError: 'x'"}

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_bad_query_result_frames_get_error_frames_and_the_socket_stays(
        api_client: APIClient, short_wait: None) -> None:
    async def scenario() -> None:
        async with worker_with_run(api_client, "q3") as comm:
            bad: list[tuple[dict[str, Any], str]] = [
                ({"type": "query_result", "id": "b1"}, "invalid_message"),
                ({"type": "query_result", "id": "b2", "token": 7}, "invalid_message"),
                ({"type": "query_result", "id": "b3", "token": "t", "error": 1},
                 "invalid_message"),
                ({"type": "query_result", "id": "b4", "token": "q.unknown"}, "stale_task"),
            ]
            for frame, code in bad:
                await comm.send_json_to(frame)
                error = await _next(comm, "error")
                assert (error["code"], error["id"]) == (code, frame["id"])
            # An answer no database could store fails the query (422) with an error frame.
            asked = asyncio.ensure_future(database_sync_to_async(_post_query)(
                api_client, "q3", "count", []))
            query = await _next(comm, "query_task")
            await comm.send_to(text_data=json.dumps({"type": "query_result", "id": "b5",
                                                     "token": query["token"],
                                                     "result": "nul \u0000"}))
            error = await _next(comm, "error")
            assert (error["code"], error["id"]) == ("invalid_payload", "b5")
            status, body = await asked
            assert status == 422 and body["error"]["code"] == "query_failed"
            assert "invalid_payload" in body["error"]["message"]
            await comm.send_json_to({"type": "ping", "id": "p"})
            assert (await _next(comm, "pong"))["id"] == "p"

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_goes_away_unanswered_leaves_no_worker(
        api_client: APIClient, short_wait: None) -> None:
    async def scenario() -> None:
        async with worker_with_run(api_client, "q4") as comm:
            asked = asyncio.ensure_future(database_sync_to_async(_post_query)(
                api_client, "q4", "count", []))
            await _next(comm, "query_task")
        status, body = await asked  # the socket went without answering
        assert status == 504 and body["error"]["code"] == "no_worker"
        assert "those tried could not answer" in body["error"]["message"]

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_worker_that_does_not_answer_is_504_query_timeout(
        api_client: APIClient, settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, query_worker_wait_seconds=0.3,
                                         query_timeout_seconds=1)

    async def scenario() -> None:
        async with worker_with_run(api_client, "q5") as comm:
            asked = asyncio.ensure_future(database_sync_to_async(_post_query)(
                api_client, "q5", "count", []))
            await _next(comm, "query_task")
            status, body = await asked
            assert status == 504 and body["error"]["code"] == "query_timeout"

    asyncio.run(scenario())
