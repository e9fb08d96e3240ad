"""POST /api/workflows/{workflow_id}/updates/{name}: the REST edge cases, and the engine's side
of the wire with a worker socket played by the test (the validation over the query path,
the accepted update's workflow task, its completion)."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.db import database_sync_to_async
from channels.testing import WebsocketCommunicator
from django.db import connections
from rest_framework.test import APIClient

from dispatch import notify

from .test_queries import _next, _row, _start, worker_with_run
from .test_start_handoff import _tick


def _update(client: APIClient, workflow_id: str, name: str, body: Any = None) -> Any:
    return client.post(f"/api/workflows/{workflow_id}/updates/{name}",
                       {"args": []} if body is None else body, format="json")


def _post_update(client: APIClient, workflow_id: str, name: str, args: list[Any],
                 update_id: str | None = None) -> tuple[int, Any]:
    body: dict[str, Any] = {"args": args}
    if update_id is not None:
        body["update_id"] = update_id
    r = _update(client, workflow_id, name, body)
    return r.status_code, r.json()


def _types(workflow_id: str) -> list[str]:
    return [event_type for _, event_type in _row(workflow_id)[1]]


@pytest.fixture
def short_wait(settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, query_worker_wait_seconds=0.3,
                                         query_timeout_seconds=5, update_timeout_seconds=10)


# ---- through Django's test client --------------------------------------------------------------


@pytest.mark.django_db
def test_an_unknown_workflow_is_404(api_client: APIClient, short_wait: None) -> None:
    r = _update(api_client, "nobody", "add")
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


@pytest.mark.django_db
def test_no_worker_is_504_no_worker_and_writes_nothing(api_client: APIClient,
                                                        short_wait: None) -> None:
    _start(api_client, "lonely", task_queue="nobody-serves-this")
    before = _row("lonely")
    r = _update(api_client, "lonely", "add", {"args": [1], "update_id": "u1"})
    assert r.status_code == 504 and r.json()["error"]["code"] == "no_worker"
    assert _row("lonely") == before


@pytest.mark.django_db
def test_a_closed_run_is_409_run_closed(api_client: APIClient, short_wait: None) -> None:
    _start(api_client, "closed")
    assert api_client.post("/api/workflows/closed/terminate", {},
                           format="json").status_code == 202
    before = _row("closed")
    r = _update(api_client, "closed", "add", {"args": [1]})
    assert r.status_code == 409
    assert r.json()["error"]["code"] == "run_closed"
    assert "terminated" in r.json()["error"]["message"]
    assert _row("closed") == before


@pytest.mark.django_db
@pytest.mark.parametrize("body", [
    {"args": "not a list"},
    {"args": [1], "extra": True},
    {"args": [], "update_id": ""},
    {"args": [], "update_id": "x" * 256},
    {"args": [], "update_id": 7},
    {"args": [], "run_id": "not-a-uuid"},
])
def test_a_bad_body_is_422(api_client: APIClient, body: Any, short_wait: None) -> None:
    _start(api_client, "bodies")
    r = _update(api_client, "bodies", "add", body)
    assert r.status_code == 422, r.content
    assert r.json()["error"]["code"] == "invalid_input"
    r = _update(api_client, "bodies", "%20padded")
    assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_name"


@pytest.mark.django_db
def test_an_update_needs_a_token(anon_client: APIClient) -> None:
    assert _update(anon_client, "any", "add").status_code == 401


@pytest.mark.django_db
def test_the_schema_documents_the_update_endpoint() -> None:
    import yaml
    from django.test import Client

    schema = yaml.safe_load(Client().get("/api/schema/").content)
    operation = schema["paths"]["/api/workflows/{workflow_id}/updates/{name}"]["post"]
    assert operation["operationId"] == "workflow_update"
    assert {"200", "401", "404", "409", "422", "504"} <= set(operation["responses"])
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    body = schema["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert set(body["properties"]) == {"args", "update_id", "run_id"}
    for code in ("update_rejected", "update_failed"):
        assert code in operation["responses"]["422"]["description"]
    assert "update_not_found" in operation["responses"]["404"]["description"]
    assert "update_timeout" in operation["responses"]["504"]["description"]


# ---- the engine's side of the wire, with a worker socket played by the test -------------------


@asynccontextmanager
async def asking(api_client: APIClient, workflow_id: str, name: str, args: list[Any],
                 update_id: str | None = None) -> AsyncIterator[asyncio.Future[Any]]:
    """The update request, sent in a thread of its own, as a future of (status, body).

    Not through ``database_sync_to_async``: its one thread would be held by the request's
    wait, and the consumer's writes (the update's completion) would queue behind it. A
    thread of asgiref's pool instead (so the view's ``async_to_sync`` runs on this loop,
    which the in-memory channel layer needs), and it gives its database connection back
    when the request is done."""
    def post() -> tuple[int, Any]:
        try:
            return _post_update(api_client, workflow_id, name, args, update_id)
        finally:
            connections.close_all()

    asked = asyncio.ensure_future(sync_to_async(post, thread_sensitive=False)())
    try:
        yield asked
    finally:
        if not asked.done():
            await asyncio.wait_for(asked, timeout=30)


async def _validate(comm: WebsocketCommunicator, name: str, args: list[Any],
                    **reply: Any) -> dict[str, Any]:
    """Answer the validation the engine asks of the worker; the query_task frame."""
    query = await _next(comm, "query_task")
    assert query["update_validation"] is True
    assert query["query_name"] == name and query["args"] == args
    await comm.send_json_to({"type": "query_result", "token": query["token"], **reply})
    return query


async def _task(comm: WebsocketCommunicator) -> dict[str, Any]:
    """The workflow task the accepted update scheduled, delivered by dispatcher ticks (run
    by the test: no dispatcher loop runs here) once the acceptance has committed."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 10
    while not (deliveries := await database_sync_to_async(_tick)()):
        assert loop.time() < deadline, "the update was never accepted"
        await asyncio.sleep(0.05)
    await notify.deliver(deliveries)
    return await _next(comm, "workflow_task")


async def _complete(comm: WebsocketCommunicator, commands: list[dict[str, Any]]) -> None:
    task = await _task(comm)
    await comm.send_json_to({"type": "workflow_task_completed", "id": "c", "token": task["token"],
                             "commands": commands})
    await _next(comm, "ack")


@pytest.mark.django_db(transaction=True)
def test_an_update_is_validated_accepted_run_and_answered_once_per_update_id(
        api_client: APIClient, short_wait: None) -> None:
    async def scenario() -> None:
        async with worker_with_run(api_client, "u1") as comm:
            async with asking(api_client, "u1", "add", [2, {"x": 1}], "first") as asked:
                await _validate(comm, "add", [2, {"x": 1}], result=None)
                task = await _task(comm)
                accepted = task["events"][-3]  # accepted, scheduled, started
                assert accepted["event_type"] == "WorkflowExecutionUpdateAccepted"
                assert accepted["attributes"] == {"update_id": "first", "update_name": "add",
                                                  "args": [2, {"x": 1}]}
                await comm.send_json_to({
                    "type": "workflow_task_completed", "id": "c", "token": task["token"],
                    "commands": [{"kind": "complete_update", "update_id": "first",
                                  "result": {"total": 3}}]})
                await _next(comm, "ack")
                assert await asked == (200, {"result": {"total": 3}})
            types = await database_sync_to_async(_types)("u1")
            assert types[-5:] == ["WorkflowExecutionUpdateAccepted", "WorkflowTaskScheduled",
                                  "WorkflowTaskStarted", "WorkflowTaskCompleted",
                                  "WorkflowExecutionUpdateCompleted"]
            # The same update id again: its first outcome, with no worker asked, nothing new.
            before = await database_sync_to_async(_row)("u1")
            async with asking(api_client, "u1", "add", [99], "first") as asked:
                assert await asked == (200, {"result": {"total": 3}})
            assert await comm.receive_nothing(timeout=0.2)
            assert await database_sync_to_async(_row)("u1") == before

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_rejection_and_an_unknown_handler_write_nothing(api_client: APIClient,
                                                          short_wait: None) -> None:
    async def scenario() -> None:
        async with worker_with_run(api_client, "u2") as comm:
            before = await database_sync_to_async(_row)("u2")
            async with asking(api_client, "u2", "add", [-1], "neg") as asked:
                await _validate(comm, "add", [-1], error="update_rejected",
                                message="the amount must be positive")
                assert await asked == (422, {"error": {
                    "code": "update_rejected", "message": "the amount must be positive"}})
            async with asking(api_client, "u2", "nope", []) as asked:
                await _validate(comm, "nope", [], error="update_not_found",
                                message="no update handler 'nope'")
                status, body = await asked
                assert status == 404 and body["error"]["code"] == "update_not_found"
            assert await comm.receive_nothing(timeout=0.2)  # no workflow task either
            assert await database_sync_to_async(_row)("u2") == before
            # A rejected update id is not taken: asked again, it is validated again.
            async with asking(api_client, "u2", "add", [1], "neg") as asked:
                await _validate(comm, "add", [1], result=None)
                await _complete(comm, [{"kind": "complete_update", "update_id": "neg",
                                        "result": 1}])
                assert await asked == (200, {"result": 1})

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_failed_update_is_422_update_failed_and_the_run_goes_on(
        api_client: APIClient, short_wait: None) -> None:
    failure = {"type": "Insufficient", "message": "insufficient funds",
               "details": {"balance": 1}, "non_retryable": False}

    async def scenario() -> None:
        async with worker_with_run(api_client, "u3") as comm:
            async with asking(api_client, "u3", "withdraw", [5], "w") as asked:
                await _validate(comm, "withdraw", [5], result=None)
                await _complete(comm, [{"kind": "complete_update", "update_id": "w",
                                        "failure": failure}])
                status, body = await asked
            assert status == 422
            error = body["error"]
            assert error["code"] == "update_failed" and error["update_id"] == "w"
            assert "insufficient funds" in error["message"]
            assert {k: error["failure"][k] for k in failure} == failure
            described = await database_sync_to_async(api_client.get)("/api/workflows/u3")
            assert described.json()["status"] == "running"
            # Its outcome is kept: asked again, the same failure.
            async with asking(api_client, "u3", "withdraw", [5], "w") as asked:
                assert (await asked)[1]["error"]["failure"] == error["failure"]

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_an_accepted_update_not_completed_in_time_is_504_and_waits_on_when_asked_again(
        api_client: APIClient, settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, query_worker_wait_seconds=0.3,
                                         query_timeout_seconds=5, update_timeout_seconds=0.5)

    async def scenario() -> None:
        async with worker_with_run(api_client, "u4") as comm:
            async with asking(api_client, "u4", "slow", [], "s") as asked:
                await _validate(comm, "slow", [], result=None)
                task = await _task(comm)  # the worker holds it
                status, body = await asked
                assert status == 504 and body["error"]["code"] == "update_timeout"
                assert body["error"]["update_id"] == "s"
            settings.SCHED = dataclasses.replace(settings.SCHED, update_timeout_seconds=10)
            async with asking(api_client, "u4", "slow", [], "s") as asked:
                assert await comm.receive_nothing(timeout=0.3)  # no second validation
                await comm.send_json_to({
                    "type": "workflow_task_completed", "id": "c", "token": task["token"],
                    "commands": [{"kind": "complete_update", "update_id": "s",
                                  "result": "late"}]})
                await _next(comm, "ack")
                assert await asked == (200, {"result": "late"})
            types = await database_sync_to_async(_types)("u4")
            assert types.count("WorkflowExecutionUpdateAccepted") == 1

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_run_that_closes_before_completing_the_update_is_409(
        api_client: APIClient, short_wait: None) -> None:
    async def scenario() -> None:
        async with worker_with_run(api_client, "u5") as comm:
            async with asking(api_client, "u5", "add", [1], "a") as asked:
                await _validate(comm, "add", [1], result=None)
                await _complete(comm, [{"kind": "complete_workflow", "result": None}])
                status, body = await asked
            assert status == 409 and body["error"]["code"] == "run_closed"
            assert "completed" in body["error"]["message"]

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_run_that_has_not_run_yet_is_validated_once_its_first_task_completed(
        api_client: APIClient, short_wait: None) -> None:
    from .test_start_handoff import connect_worker

    async def scenario() -> None:
        comm = await connect_worker(max_workflow_tasks=2)
        try:
            await database_sync_to_async(_start)(api_client, "u6")
            first = await _next(comm, "workflow_task")  # held: the run has not run yet
            async with asking(api_client, "u6", "add", [1], "early") as asked:
                query = await _next(comm, "query_task")
                await comm.send_json_to({"type": "query_result", "token": query["token"],
                                         "error": "not_run_yet", "message": "not yet"})
                await comm.send_json_to({"type": "workflow_task_completed", "id": "c1",
                                         "token": first["token"], "commands": []})
                await _next(comm, "ack")
                await _validate(comm, "add", [1], result=None)  # asked again
                await _complete(comm, [{"kind": "complete_update", "update_id": "early",
                                        "result": 1}])
                assert await asked == (200, {"result": 1})
        finally:
            await comm.disconnect()

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_a_validation_not_answered_in_time_is_504_update_timeout_and_writes_nothing(
        api_client: APIClient, settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, query_worker_wait_seconds=0.3,
                                         query_timeout_seconds=0.5)

    async def scenario() -> None:
        async with worker_with_run(api_client, "u7") as comm:
            before = await database_sync_to_async(_row)("u7")
            async with asking(api_client, "u7", "add", [1], "quiet") as asked:
                query = await _next(comm, "query_task")  # never answered
                assert query["update_validation"] is True
                status, body = await asked
            assert status == 504 and body["error"]["code"] == "update_timeout"
            assert "nothing was recorded" in body["error"]["message"]
            assert await database_sync_to_async(_row)("u7") == before

    asyncio.run(scenario())
