"""Unit tests of the client's queries, listing and handles by id: what is sent, how the
answers are read (the engine replaced by ``httpx.MockTransport``, as in test_client_unit)."""

from __future__ import annotations

import asyncio
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

import sdk
from sdk._workflow import workflow

from .test_client_unit import Recorder, client, error, ok


def params(rec: Recorder, index: int) -> dict[str, list[str]]:
    return parse_qs(urlsplit(str(rec.requests[index].url)).query)


def test_a_query_posts_its_args_and_returns_the_result() -> None:
    rec = Recorder(ok({"result": {"count": 3}}), ok({"result": None}))
    handle = client(rec).get_workflow_handle("cart/7")
    assert handle.query("state", 1, {"a": [2]}) == {"count": 3}
    req = rec.requests[0]
    assert req.method == "POST"
    assert req.url.raw_path.decode() == "/api/workflows/cart%2F7/queries/state"
    assert rec.body(0) == {"args": [1, {"a": [2]}]}
    pinned = client(rec).get_workflow_handle("w", run_id="r9")
    assert pinned.query("odd name/?") is None
    assert rec.requests[1].url.raw_path.decode() == "/api/workflows/w/queries/odd%20name%2F%3F"
    assert rec.body(1) == {"args": [], "run_id": "r9"}


@pytest.mark.parametrize(("status", "code"), [(404, "query_not_found"), (422, "query_failed"),
                                              (504, "no_worker"), (504, "query_timeout")])
def test_a_query_error_raises_with_its_code_and_is_sent_once(status: int, code: str) -> None:
    rec = Recorder(error(status, code, "why"))
    with pytest.raises(sdk.SchedAPIError) as info:
        client(rec).get_workflow_handle("w").query("count")
    assert (info.value.status_code, info.value.code, info.value.message) == (status, code, "why")
    assert len(rec.requests) == 1


def test_a_query_needs_a_name() -> None:
    with pytest.raises(ValueError):
        client(Recorder()).get_workflow_handle("w").query("")


def test_list_workflows_follows_the_cursor_lazily_with_the_same_filters() -> None:
    @workflow
    async def cart(ctx: sdk.WorkflowContext, _: object) -> None: ...

    rec = Recorder(ok({"items": [{"workflow_id": "a"}, {"workflow_id": "b"}],
                       "next_cursor": "c1"}),
                   ok({"items": [{"workflow_id": "c"}], "next_cursor": None}))
    runs = client(rec).list_workflows(status="running", workflow_type=cart,
                                      query={"task_queue": "q"}, page_size=2)
    assert next(runs) == {"workflow_id": "a"}
    assert len(rec.requests) == 1  # the next page only when the iteration needs it
    assert [r["workflow_id"] for r in runs] == ["b", "c"]
    assert params(rec, 0) == {"status": ["running"], "workflow_type": ["cart"],
                              "task_queue": ["q"], "page_size": ["2"]}
    assert params(rec, 1) == {**params(rec, 0), "cursor": ["c1"]}


def test_list_workflows_takes_a_query_in_temporals_syntax() -> None:
    rec = Recorder(ok({"items": [], "next_cursor": None}))
    query = "WorkflowType = 'cart' AND ExecutionStatus = 'Running'"
    assert list(client(rec).list_workflows(query=query, page_size=5)) == []
    assert params(rec, 0) == {"query": [query], "page_size": ["5"]}


def test_list_workflows_without_filters_and_with_an_unknown_one() -> None:
    rec = Recorder(ok({"items": [], "next_cursor": None}))
    assert list(client(rec).list_workflows()) == []
    assert params(rec, 0) == {"page_size": ["100"]}
    with pytest.raises(ValueError, match="task_queue, workflow_id"):
        list(client(Recorder()).list_workflows(query={"created_at": "x"}))
    bad = Recorder(error(422, "invalid_input"))
    with pytest.raises(sdk.SchedAPIError):
        list(client(bad).list_workflows(status="nope"))


def test_the_async_client_queries_and_lists_like_the_sync_one() -> None:
    rec = Recorder(ok({"result": 5}),
                   ok({"items": [{"workflow_id": "a"}], "next_cursor": "n"}),
                   ok({"items": [{"workflow_id": "b"}], "next_cursor": None}),
                   ok({}, 202))

    async def scenario() -> None:
        async with sdk.AsyncClient("http://engine:8000", token="t",
                                   transport=httpx.MockTransport(rec)) as c:
            handle = c.get_workflow_handle("w")
            assert await handle.query("count", 1) == 5
            assert [r["workflow_id"] async for r in c.list_workflows(
                workflow_type="cart", query={"workflow_id": "a"})] == ["a", "b"]
            await handle.terminate(reason="stop")

    asyncio.run(scenario())
    assert rec.body(0) == {"args": [1]}
    assert params(rec, 2)["cursor"] == ["n"]
    assert params(rec, 1)["workflow_id"] == ["a"]
    assert rec.body(3) == {"reason": "stop"}
