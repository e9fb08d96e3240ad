"""The HTTP door before Django reads a body (``workflows.api.guard``), driven through the
engine's real ASGI application: a body over the limit is refused by its Content-Length
without a byte read, a streamed one once it passes the limit, and an API request with a bad
token and a large (or chunked) body is refused before its body is read."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.conf import settings

from workflows.models import ApiToken, Execution, TokenScope

pytestmark = pytest.mark.django_db(transaction=True)


class Client:
    """One HTTP request through ``schedproject.asgi.application``; counts the body chunks
    the application asked for."""

    def __init__(self, chunks: list[bytes], *, endless: bytes | None = None) -> None:
        self.chunks = list(chunks)
        self.endless = endless
        self.reads = 0
        self.sent: list[dict[str, Any]] = []

    async def receive(self) -> dict[str, Any]:
        self.reads += 1
        if self.endless is not None:
            return {"type": "http.request", "body": self.endless, "more_body": True}
        if self.chunks:
            chunk = self.chunks.pop(0)
            return {"type": "http.request", "body": chunk, "more_body": bool(self.chunks)}
        await asyncio.Event().wait()  # the client stays connected until it is answered
        raise AssertionError("unreachable")

    async def send(self, message: dict[str, Any]) -> None:
        self.sent.append(message)

    def request(self, method: str, path: str, headers: dict[str, str]) -> tuple[int, Any]:
        from schedproject.asgi import application

        path, _, query = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": method, "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": query.encode(), "root_path": "", "server": ("testserver", 80),
                 "client": ("127.0.0.1", 5000),
                 "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()]}
        async_to_sync(application)(scope, self.receive, self.send)
        start = next(m for m in self.sent if m["type"] == "http.response.start")
        body = b"".join(m.get("body", b"") for m in self.sent if m["type"] == "http.response.body")
        return start["status"], json.loads(body) if body else None


@pytest.fixture
def token() -> str:
    return ApiToken.issue("guard", scope=TokenScope.API)[1]


def headers(token: str, **extra: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}", "content-type": "application/json", **extra}


def test_a_declared_length_over_the_limit_is_413_before_any_byte_is_read(token: str) -> None:
    limit = settings.SCHED.max_payload_bytes
    client = Client([b"{}"])
    status, body = client.request("POST", "/api/workflows",
                                  headers(token, **{"content-length": str(limit + 1)}))
    assert status == 413
    assert body["error"]["code"] == "payload_too_large"
    assert body["error"]["size"] == limit + 1 and body["error"]["limit"] == limit
    assert str(limit + 1) in body["error"]["message"] and str(limit) in body["error"]["message"]
    assert client.reads == 0


def test_a_streamed_body_is_cut_off_at_the_limit(token: str) -> None:
    """No Content-Length (chunked), and a client that would send forever: refused once the
    limit is passed, after reading about the limit and no more."""
    limit = settings.SCHED.max_payload_bytes
    chunk = b"x" * 65536
    client = Client([], endless=chunk)
    status, body = client.request("POST", "/api/workflows", headers(token))
    assert status == 413 and body["error"]["code"] == "payload_too_large"
    assert body["error"]["limit"] == limit
    assert client.reads <= limit // len(chunk) + 2
    assert not Execution.objects.exists()


LARGE = json.dumps({"workflow_type": "T", "input": "x" * 100_000}).encode()


@pytest.mark.parametrize("authorization", ["Bearer nope", "Bearer a b", "Bearer \x7f"])
@pytest.mark.parametrize("length", [str(len(LARGE)), None])
def test_a_bad_token_is_refused_before_a_large_body_is_read(authorization: str,
                                                             length: str | None) -> None:
    client = Client([LARGE])
    extra = {} if length is None else {"content-length": length}
    status, body = client.request("POST", "/api/workflows",
                                  {"authorization": authorization,
                                   "content-type": "application/json", **extra})
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    assert client.reads == 0
    assert not Execution.objects.exists()


def test_a_worker_token_is_refused_before_a_large_body_is_read() -> None:
    raw = ApiToken.issue("w", scope=TokenScope.WORKER)[1]
    client = Client([LARGE])
    status, body = client.request("POST", "/api/workflows",
                                  headers(raw, **{"content-length": str(len(LARGE))}))
    assert status == 403 and body["error"]["code"] == "forbidden"
    assert client.reads == 0


def test_a_bad_token_with_a_small_body_is_401_from_the_view() -> None:
    client = Client([b'{"workflow_type": "T"}'])
    status, body = client.request("POST", "/api/workflows",
                                  {"authorization": "Bearer nope",
                                   "content-type": "application/json", "content-length": "22"})
    assert status == 401 and body["error"]["code"] == "unauthenticated"
    assert not Execution.objects.exists()


def test_a_large_body_with_a_good_token_passes(token: str) -> None:
    client = Client([LARGE[:50_000], LARGE[50_000:]])
    status, body = client.request("POST", "/api/workflows",
                                  headers(token, **{"content-length": str(len(LARGE))}))
    assert status == 201, body


def test_a_good_request_passes_the_guard(token: str) -> None:
    payload = json.dumps({"workflow_type": "T", "workflow_id": "through"}).encode()
    client = Client([payload[:10], payload[10:]])
    status, body = client.request("POST", "/api/workflows",
                                  headers(token, **{"content-length": str(len(payload))}))
    assert status == 201, body
    assert body["workflow_id"] == "through"


def test_a_length_that_is_not_a_number_is_400(token: str) -> None:
    client = Client([b"{}"])
    status, body = client.request("POST", "/api/workflows",
                                  headers(token, **{"content-length": "12abc"}))
    assert status == 400 and body["error"]["code"] == "bad_request"
    assert client.reads == 0
