"""Unit tests of ``sdk.Client``/``sdk.AsyncClient``: request shapes and error mapping.

The engine is replaced by ``httpx.MockTransport`` answering what the REST API documents. This
tier checks only what the client sends and how it reads answers; the end-to-end tests run the
client against the real engine.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

import sdk
from sdk._client import MAX_WAIT_PER_REQUEST

Handler = Callable[[httpx.Request], httpx.Response]


class Recorder:
    """A scripted engine: answers requests in order and records them."""

    def __init__(self, *responses: httpx.Response | Handler) -> None:
        self.responses = list(responses)
        self.requests: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        if not self.responses:
            raise AssertionError(f"unexpected request {request.method} {request.url}")
        answer = self.responses.pop(0)
        return answer(request) if callable(answer) else answer

    def body(self, index: int) -> Any:
        return json.loads(self.requests[index].content)


def client(recorder: Recorder, **options: Any) -> sdk.Client:
    return sdk.Client("http://engine:8000/", token="secret",
                      transport=httpx.MockTransport(recorder), **options)


def request_id(body: dict[str, Any]) -> str:
    """Take the ``request_id`` out of a start's or a signal's body: a new 32-hex UUID."""
    value = body.pop("request_id")
    assert isinstance(value, str) and len(value) == 32 and int(value, 16) >= 0
    return value


def ok(body: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=body)


def error(status: int, code: str, message: str = "nope", **extra: Any) -> httpx.Response:
    return httpx.Response(status, json={"error": {"code": code, "message": message, **extra}})


def test_start_workflow_sends_the_documented_body_and_token() -> None:
    rec = Recorder(ok({"workflow_id": "order-1", "run_id": "r1", "status": "running"}, 201))
    handle = client(rec).start_workflow("order", {"n": 1}, workflow_id="order-1",
                                        task_queue="q", execution_timeout=90)
    req = rec.requests[0]
    assert req.method == "POST"
    assert req.url == "http://engine:8000/api/workflows"
    assert req.headers["authorization"] == "Bearer secret"
    body = rec.body(0)
    request_id(body)
    assert body == {"workflow_type": "order", "input": {"n": 1}, "workflow_id": "order-1",
                    "task_queue": "q", "execution_timeout": 90}
    assert (handle.workflow_id, handle.run_id) == ("order-1", "r1")


def test_start_workflow_omits_unset_optional_fields() -> None:
    rec = Recorder(ok({"workflow_id": "gen", "run_id": "r1", "status": "running"}, 201))
    client(rec).start_workflow("hello")
    body = rec.body(0)
    request_id(body)
    assert body == {"workflow_type": "hello", "input": None, "task_queue": "default"}


def test_start_workflow_accepts_a_decorated_workflow() -> None:
    class Definition:
        name = "greeting"

    def fn() -> None: ...

    fn.__sched_workflow__ = Definition()  # type: ignore[attr-defined]
    rec = Recorder(ok({"workflow_id": "w", "run_id": "r", "status": "running"}, 201))
    client(rec).start_workflow(fn)
    assert rec.body(0)["workflow_type"] == "greeting"


def test_start_workflow_409_raises_already_started_with_run_id() -> None:
    rec = Recorder(error(409, "workflow_already_started", "open run", run_id="r0"))
    with pytest.raises(sdk.WorkflowAlreadyStartedError) as info:
        client(rec).start_workflow("order", workflow_id="order-1")
    assert info.value.run_id == "r0"
    assert info.value.status_code == 409
    assert info.value.code == "workflow_already_started"
    assert isinstance(info.value, sdk.SchedAPIError)
    assert isinstance(info.value, sdk.SchedError)


@pytest.mark.parametrize(
    ("response", "code", "message"),
    [
        (error(404, "workflow_not_found", "no such workflow"), "workflow_not_found",
         "no such workflow"),
        (error(401, "unauthorized", "bad token"), "unauthorized", "bad token"),
        (httpx.Response(502, text="Bad Gateway"), "http_502", "Bad Gateway"),
        (httpx.Response(500, json={"detail": "boom"}), "http_500", '{"detail":"boom"}'),
    ],
)
def test_http_errors_become_sched_api_errors(
    response: httpx.Response, code: str, message: str
) -> None:
    rec = Recorder(response)
    with pytest.raises(sdk.SchedAPIError) as info:
        client(rec, retries=0).get_workflow_handle("w").describe()
    assert info.value.status_code == response.status_code
    assert info.value.code == code
    assert info.value.message.replace(" ", "") == message.replace(" ", "")
    assert not isinstance(info.value, sdk.WorkflowAlreadyStartedError)


def test_workflow_ids_are_quoted_in_paths() -> None:
    rec = Recorder(ok({}, 202), ok({}, 202), ok({}, 202), ok({"workflow_id": "a/b c?#"}))
    handle = client(rec).get_workflow_handle("a/b c?#", run_id="r1")
    handle.signal("go", {"x": 1})
    handle.cancel("enough")
    handle.terminate()
    handle.describe()
    paths = [r.url.raw_path.decode() for r in rec.requests]
    assert paths == [
        "/api/workflows/a%2Fb%20c%3F%23/signals",
        "/api/workflows/a%2Fb%20c%3F%23/cancel",
        "/api/workflows/a%2Fb%20c%3F%23/terminate",
        "/api/workflows/a%2Fb%20c%3F%23?run_id=r1",
    ]
    signal = rec.body(0)
    request_id(signal)
    assert signal == {"name": "go", "input": {"x": 1}}
    assert rec.body(1) == {"reason": "enough"}
    assert rec.body(2) == {}


def test_result_long_polls_until_the_run_closes() -> None:
    rec = Recorder(ok({"status": "running"}), ok({"status": "running"}),
                   ok({"status": "completed", "result": "Hello, Ada!"}))
    assert client(rec).get_workflow_handle("w", "r1").result() == "Hello, Ada!"
    assert len(rec.requests) == 3
    for req in rec.requests:
        assert req.url.path == "/api/workflows/w/result"
        assert req.url.params["run_id"] == "r1"
        assert float(req.url.params["wait"]) == MAX_WAIT_PER_REQUEST
        # the HTTP timeout outlasts the long poll
        assert req.extensions["timeout"]["read"] > MAX_WAIT_PER_REQUEST


def test_result_without_run_id_asks_for_the_latest_run() -> None:
    rec = Recorder(ok({"status": "completed", "result": None}))
    assert client(rec).get_workflow_handle("w").result() is None
    assert "run_id" not in rec.requests[0].url.params


def test_result_with_a_timeout_caps_the_wait_and_raises_timeout_error() -> None:
    def still_running(request: httpx.Request) -> httpx.Response:
        time.sleep(float(request.url.params["wait"]))  # the engine holds the poll open
        return ok({"status": "running"})

    rec = Recorder(*[still_running] * 10)
    with pytest.raises(TimeoutError):
        client(rec).get_workflow_handle("w", "r1").result(timeout=0.2)
    assert 1 <= len(rec.requests) <= 3
    assert float(rec.requests[0].url.params["wait"]) <= 0.2


@pytest.mark.parametrize("status", ["failed", "canceled", "terminated", "timed_out"])
def test_result_raises_workflow_failure_error(status: str) -> None:
    failure = {"type": "ValueError", "message": "bad", "stack": "", "details": None,
               "non_retryable": False}
    rec = Recorder(ok({"status": status, "failure": failure if status == "failed" else None}))
    with pytest.raises(sdk.WorkflowFailureError) as info:
        client(rec).get_workflow_handle("w", "r1").result()
    assert info.value.status == status
    if status == "failed":
        assert info.value.failure == failure


def test_result_follows_continue_as_new_to_the_latest_run() -> None:
    rec = Recorder(
        ok({"status": "continued_as_new"}),
        ok({"workflow_id": "w", "run_id": "r2", "status": "running"}),
        ok({"status": "completed", "result": 42}),
    )
    assert client(rec).get_workflow_handle("w", "r1").result() == 42
    assert rec.requests[0].url.params["run_id"] == "r1"
    assert rec.requests[1].url.path == "/api/workflows/w"
    assert "run_id" not in rec.requests[1].url.params
    assert rec.requests[2].url.params["run_id"] == "r2"


def test_history_pages_until_exhausted() -> None:
    rec = Recorder(
        ok({"events": [{"event_id": 1}, {"event_id": 2}], "next_after": 2}),
        ok({"events": [{"event_id": 3}], "next_after": None}),
    )
    events = client(rec).get_workflow_handle("w", "r1").history()
    assert [e["event_id"] for e in events] == [1, 2, 3]
    assert "after" not in rec.requests[0].url.params
    assert rec.requests[1].url.params["after"] == "2"
    assert rec.requests[1].url.params["run_id"] == "r1"


def test_async_client_mirrors_the_sync_one() -> None:
    rec = Recorder(
        ok({"workflow_id": "w/1", "run_id": "r1", "status": "running"}, 201),
        ok({"status": "running"}),
        ok({"status": "completed", "result": [1, 2]}),
        error(409, "workflow_already_started", "open", run_id="r1"),
        ok({}, 202),
        ok({"events": [{"event_id": 1}], "next_after": None}),
    )

    async def scenario() -> None:
        async with sdk.AsyncClient("http://engine:8000", token="t",
                                   transport=httpx.MockTransport(rec)) as c:
            handle = await c.start_workflow("hello", "Ada", workflow_id="w/1")
            assert isinstance(handle, sdk.AsyncWorkflowHandle)
            assert await handle.result() == [1, 2]
            with pytest.raises(sdk.WorkflowAlreadyStartedError):
                await c.start_workflow("hello", "Ada", workflow_id="w/1")
            await handle.signal("approve", "Bob")
            assert await handle.history() == [{"event_id": 1}]

    asyncio.run(scenario())
    assert rec.requests[1].url.raw_path.decode().startswith("/api/workflows/w%2F1/result?")
    assert rec.requests[4].url.raw_path.decode() == "/api/workflows/w%2F1/signals"


def refuse_connection(request: httpx.Request) -> httpx.Response:
    raise httpx.ConnectError("connection refused", request=request)


def test_a_start_is_retried_with_its_request_id_on_connection_errors_and_5xx() -> None:
    rec = Recorder(refuse_connection, httpx.Response(503, text="restarting"),
                   ok({"workflow_id": "w", "run_id": "r1", "status": "running"}, 201))
    handle = client(rec).start_workflow("hello", workflow_id="w")
    assert handle.run_id == "r1"
    ids = {request_id(rec.body(i)) for i in range(3)}
    assert len(ids) == 1  # every attempt is the same request


def test_a_signal_is_retried_with_its_request_id_and_a_new_call_gets_a_new_one() -> None:
    rec = Recorder(httpx.Response(502, text="Bad Gateway"), ok({}, 202), ok({}, 202))
    handle = client(rec).get_workflow_handle("w")
    handle.signal("go")
    handle.signal("go")
    first, retried, second = (request_id(rec.body(i)) for i in range(3))
    assert first == retried != second


def test_retries_give_up_after_the_last_attempt_and_cancel_is_sent_once() -> None:
    rec = Recorder(*[httpx.Response(503, text="down")] * 3)
    with pytest.raises(sdk.SchedAPIError) as info:
        client(rec, retries=2).get_workflow_handle("w").signal("go")
    assert info.value.status_code == 503 and len(rec.requests) == 3
    once = Recorder(httpx.Response(503, text="down"))
    with pytest.raises(sdk.SchedAPIError):
        client(once).get_workflow_handle("w").cancel()
    assert len(once.requests) == 1
    refused = Recorder(refuse_connection)
    with pytest.raises(httpx.ConnectError):
        client(refused).get_workflow_handle("w").terminate()


def test_a_4xx_is_not_retried() -> None:
    rec = Recorder(error(422, "invalid_input"))
    with pytest.raises(sdk.SchedAPIError):
        client(rec).start_workflow("hello")
    assert len(rec.requests) == 1
