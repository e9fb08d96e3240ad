"""The run page's query form: asked of a worker (played by the test over a real socket), the
answer shown on the page, every refusal a message on the page; nothing written."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
from channels.db import database_sync_to_async
from django.contrib.auth.models import User
from django.test import Client

from tests.api.test_queries import _next, _row, worker_with_run
from tests.dashboard.conftest import user_with

from .test_views import post, text


@pytest.fixture
def short_wait(settings: Any) -> None:
    settings.SCHED = dataclasses.replace(settings.SCHED, query_worker_wait_seconds=0.3,
                                         query_timeout_seconds=5)


@pytest.fixture
def viewer(transactional_db: None) -> Client:
    """A user who may only view runs: a query writes nothing, so that is enough."""
    client = Client(enforce_csrf_checks=True)
    client.force_login(user_with("viewer", "workflows.view_execution"))
    return client


def _ask(client: Client, workflow_id: str, name: str, args: str) -> tuple[int, str]:
    """The status and the page's visible text."""
    status, shown, _ = _ask_raw(client, workflow_id, name, args)
    return status, shown


def _ask_raw(client: Client, workflow_id: str, name: str, args: str) -> tuple[int, str, str]:
    r = post(client, "/query/", {"workflow_id": workflow_id, "name": name, "args": args})
    return r.status_code, text(r), r.content.decode()


@pytest.mark.django_db(transaction=True)
def test_a_viewer_asks_and_sees_the_answer(api_client: Any, viewer: Client,
                                           short_wait: None) -> None:
    async def scenario() -> None:
        async with worker_with_run(api_client, "q1") as comm:
            before = await database_sync_to_async(_row)("q1")
            page = await database_sync_to_async(viewer.get)("/workflows/q1")
            assert 'id="query-form"' in page.content.decode()
            asked = asyncio.ensure_future(database_sync_to_async(_ask_raw)(
                viewer, "q1", "basket", '["tea", 2]'))
            query = await _next(comm, "query_task")
            assert query["query_name"] == "basket" and query["args"] == ["tea", 2]
            await comm.send_json_to({"type": "query_result", "id": "r1",
                                     "token": query["token"],
                                     "result": {"items": ["<b>tea</b>"], "n": 2**70}})
            await _next(comm, "ack")
            status, shown, raw = await asked
            assert status == 200
            assert "basket answered" in shown and str(2**70) in shown
            assert "&lt;b&gt;tea&lt;/b&gt;" in raw and "<b>tea</b>" not in raw  # escaped
            assert await database_sync_to_async(_row)("q1") == before

    asyncio.run(scenario())


@pytest.mark.django_db(transaction=True)
def test_the_workers_refusal_is_a_message(api_client: Any, viewer: Client,
                                          short_wait: None) -> None:
    async def scenario() -> None:
        async with worker_with_run(api_client, "q2") as comm:
            asked = asyncio.ensure_future(database_sync_to_async(_ask)(
                viewer, "q2", "nope", ""))
            query = await _next(comm, "query_task")
            assert query["args"] == []  # empty arguments: none
            await comm.send_json_to({"type": "query_result", "id": "r1",
                                     "token": query["token"], "error": "query_not_found",
                                     "message": "no query handler 'nope'"})
            await _next(comm, "ack")
            status, shown = await asked
            assert status == 404
            assert "no query handler 'nope'" in shown and "(query_not_found)" in shown

    asyncio.run(scenario())


@pytest.mark.parametrize(("args", "says"), [
    ('{"a": 1}', "The arguments are a JSON list"),
    ("[1,", "Not valid JSON"),
])
def test_bad_arguments_are_a_message(api_client: Any, viewer: Client, args: str,
                                     says: str) -> None:
    r = api_client.post("/api/workflows", {"workflow_type": "T", "workflow_id": "q3"},
                        format="json")
    assert r.status_code == 201
    status, shown = _ask(viewer, "q3", "count", args)
    assert status == 422 and says in shown


def test_no_worker_is_a_message(api_client: Any, viewer: Client, short_wait: None) -> None:
    r = api_client.post("/api/workflows", {"workflow_type": "T", "workflow_id": "q4",
                                           "task_queue": "nobody-serves-this"}, format="json")
    assert r.status_code == 201
    status, shown = _ask(viewer, "q4", "count", "[]")
    assert status == 504 and "(no_worker)" in shown


def test_asking_needs_the_view_permission(api_client: Any, transactional_db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(User.objects.create_user("nobody", password="pw-nobody-123"))
    status, shown = _ask(client, "q5", "count", "[]")
    assert status == 403 and "workflows.view_execution" in shown
