"""The engine's HTTP door inside daphne (``dispatch.httpdoor``), on a real engine process and
raw sockets: an oversized body is refused before it is sent, a chunked one is cut at the
limit, a trickling client is answered 408 and dropped, and the engine serves on."""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e.harness import Engine, Stack

LIMIT = 65_536
RECEIVE_SECONDS = 2


@pytest.fixture
def engine(stack: Stack, logs: Path) -> Iterator[Engine]:
    e = stack.engine(log=logs / "engine.log", extra_env={
        "SCHED_MAX_PAYLOAD_BYTES": str(LIMIT),
        "SCHED_HTTP_RECEIVE_TIMEOUT_SECONDS": str(RECEIVE_SECONDS)})
    yield e
    e.stop()


def _connect(engine: Engine) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", engine.port), timeout=30)
    return sock


def _answer(sock: socket.socket) -> tuple[int, dict[str, object], bool]:
    """The response's status and JSON body, and whether the engine then closed the
    connection."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        if not chunk:
            break
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    status = int(head.split(b" ")[1])
    length = int(next(line.split(b":")[1] for line in head.split(b"\r\n")
                      if line.lower().startswith(b"content-length")))
    while len(body) < length:
        body += sock.recv(65536)
    sock.settimeout(10)
    try:
        closed = sock.recv(1) == b""
    except (ConnectionResetError, TimeoutError):
        closed = True
    return status, json.loads(body[:length]), closed


def _healthy(engine: Engine) -> bool:
    return httpx.get(engine.url + "/healthz", timeout=10).status_code == 200


def test_a_declared_length_over_the_limit_is_refused_before_the_body(engine: Engine) -> None:
    with _connect(engine) as sock:
        sock.sendall(b"POST /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\n"
                     b"Content-Length: 500000000\r\n\r\n")  # and not one byte of the body
        status, body, closed = _answer(sock)
    assert status == 413 and closed
    error = body["error"]
    assert isinstance(error, dict)
    assert error["code"] == "payload_too_large"
    assert (error["size"], error["limit"]) == (500_000_000, LIMIT)
    assert _healthy(engine)


def test_a_chunked_body_is_cut_at_the_limit(engine: Engine) -> None:
    with _connect(engine) as sock:
        sock.sendall(b"POST /api/workflows HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                     b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        chunk = b"x" * 8192
        sent = 0
        try:
            while sent < 4 * LIMIT:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
        except (BrokenPipeError, ConnectionResetError):
            pass  # cut off while sending: the answer is already there
        status, body, closed = _answer(sock)
    assert status == 413 and closed
    assert isinstance(body["error"], dict) and body["error"]["code"] == "payload_too_large"
    assert _healthy(engine)


def test_a_trickling_client_is_answered_408_and_dropped(engine: Engine) -> None:
    with _connect(engine) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        began = time.monotonic()
        try:
            for i in range(40):  # a header every 0.25 s: never idle, never done
                sock.sendall(b"X-Slow-%d: 1\r\n" % i)
                time.sleep(0.25)
        except (BrokenPipeError, ConnectionResetError):
            pass
        status, body, closed = _answer(sock)
        took = time.monotonic() - began
    assert status == 408 and closed
    assert isinstance(body["error"], dict) and body["error"]["code"] == "request_timeout"
    assert took < 9  # cut at the receive timeout, not after the client's 10 s of trickle
    assert _healthy(engine)


def test_a_connection_that_sends_nothing_is_dropped(engine: Engine) -> None:
    with _connect(engine) as sock:
        sock.settimeout(RECEIVE_SECONDS * 10)
        began = time.monotonic()
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
    assert time.monotonic() - began < RECEIVE_SECONDS * 10
    assert _healthy(engine)


def test_requests_within_the_limits_are_served_as_before(engine: Engine, stack: Stack) -> None:
    r = httpx.post(engine.url + "/api/workflows", timeout=30,
                   headers={"Authorization": f"Bearer {stack.token}"},
                   json={"workflow_type": "door", "input": "x" * (LIMIT // 2)})
    assert r.status_code == 201, r.text


@pytest.mark.parametrize("content_type, body", [
    ("application/x-www-form-urlencoded", b"workflow_type=door"),
    ("multipart/form-data; boundary=xx",
     b'--xx\r\nContent-Disposition: form-data; name="workflow_type"\r\n\r\ndoor\r\n--xx--\r\n'),
])
def test_a_form_body_is_left_to_the_api(engine: Engine, stack: Stack, content_type: str,
                                        body: bytes) -> None:
    """The door does not parse a form body itself (Twisted's own parse is off): the API
    answers it as any body it does not take, and nothing is started."""
    r = httpx.post(engine.url + "/api/workflows", timeout=30, content=body,
                   headers={"Authorization": f"Bearer {stack.token}",
                            "Content-Type": content_type})
    assert r.status_code == 415, r.text
    assert r.json()["error"]["code"] == "unsupported_media_type"
    listed = httpx.get(engine.url + "/api/workflows", timeout=30,
                       headers={"Authorization": f"Bearer {stack.token}"}).json()
    assert listed["items"] == []
    assert _healthy(engine)
