"""The HTTP door, before Django reads a body: size first, then (for the API) the token.

Django's ASGI handler reads a request's whole body (spooling it to disk) before any view,
middleware or parser runs, so the parser's 413 and DRF's authentication came after the bytes
were in. ``BodyGuard`` wraps the HTTP application and, for every request:

1. refuses a ``Content-Length`` over ``SCHED_MAX_PAYLOAD_BYTES`` at once (413
   ``payload_too_large`` with its ``size`` and ``limit``), or one that is not a number (400);
2. for an API request whose body is larger than ``TOKEN_FIRST_BYTES`` or of unknown length
   (chunked) (``POST``/``PUT``/``PATCH``/``DELETE`` under ``/api/``, the public schema and
   docs aside), checks the bearer token first and answers 401/403 without reading the body.
   A smaller body costs less to read than the check costs a start (a thread hop, a query),
   so it is read and its token checked by the view, as before;
3. counts a body's bytes as they arrive (chunked or with a false length): past the limit it
   tells Django the client went away (so nothing more is read or kept) and answers 413.

What it answers is the API's error body (``workflows.api.errors``).
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from channels.db import database_sync_to_async
from django.db import DatabaseError
from rest_framework import exceptions

from schedproject import config

from .auth import SCOPE_TOKEN, bearer_token
from .errors import PayloadTooLarge, error_body, to_response

Scope = dict[str, Any]
Message = Mapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PUBLIC_API_PREFIXES = ("/api/schema/", "/api/docs/")
BODY_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
TOKEN_FIRST_BYTES = 64 * 1024


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


def _check_token(scope: Scope,
                 header: str) -> tuple[int, dict[str, Any], dict[str, str]] | None:
    """The answer to a request whose bearer token is refused, or ``None`` (a valid token,
    kept in ``scope`` under ``SCOPE_TOKEN`` for the view's authentication, or no ``Bearer``
    header: DRF answers that one, it needs no body)."""
    try:
        token = bearer_token(header)
    except (exceptions.APIException, DatabaseError) as exc:
        response = to_response(exc)  # a database that is down: 503, as the views answer
        return response.status_code, dict(response.data or {}), dict(response.items())
    if token is not None:
        scope[SCOPE_TOKEN] = (header, token)
    return None


async def _answer(send: Send, status: int, body: dict[str, Any],
                  headers: dict[str, str] | None = None) -> None:
    payload = json.dumps(body).encode()
    extra = [(k.lower().encode("latin-1"), v.encode("latin-1"))
             for k, v in (headers or {}).items()
             if k.lower() not in ("content-type", "content-length")]
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(payload)).encode()),
                            (b"connection", b"close"), *extra]})
    await send({"type": "http.response.body", "body": payload})


def too_large_body(limit: int, size: int | None) -> dict[str, Any]:
    """The API's 413 body: ``payload_too_large``, with the body's size (if known) and the limit."""
    exc = PayloadTooLarge(limit=limit, size=size)
    return error_body("payload_too_large", str(exc.detail), **exc.extra)


class BodyGuard:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit = config.get().max_payload_bytes
        declared = _header(scope, b"content-length")
        if declared is not None:
            if not declared.strip().isdigit():
                await _answer(send, 400, error_body(
                    "bad_request", "Content-Length must be a number of bytes"))
                return
            if int(declared) > limit:
                await _answer(send, 413, too_large_body(limit, int(declared)))
                return
        path: str = scope.get("path", "")
        if (scope.get("method") in BODY_METHODS and path.startswith("/api/")
                and not path.startswith(PUBLIC_API_PREFIXES)
                and (declared is None or int(declared) > TOKEN_FIRST_BYTES)):
            # Not on Channels' one sync thread: these checks must not queue behind each other.
            refusal = await database_sync_to_async(_check_token, thread_sensitive=False)(
                scope, _header(scope, b"authorization") or "")
            if refusal is not None:
                await _answer(send, *refusal)
                return
        received = 0
        overflow = False

        async def counted() -> Message:
            nonlocal received, overflow
            message = await receive()
            if message["type"] == "http.request" and not overflow:
                received += len(message.get("body", b""))
                if received > limit:
                    overflow = True  # Django stops reading and keeps nothing
                    return {"type": "http.disconnect"}
            return message

        await self.app(scope, counted, send)
        if overflow:
            await _answer(send, 413, too_large_body(limit, None))
